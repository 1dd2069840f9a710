from api_gateway.cli import main

main()
