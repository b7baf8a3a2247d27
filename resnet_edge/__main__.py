from resnet_edge.cli import main

main(prog_name="resnet-edge")
