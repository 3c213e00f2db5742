from linkband_historyd.processes.supervisor import main

main()
