"""softdpu lab: network-namespace labs (placeholder until lab.py lands)."""


def add_parser(sub):
    pass


def run(args, out):
    return 2
