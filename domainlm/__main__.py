from domainlm.cli import main

main()
