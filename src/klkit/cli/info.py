"""klkit info: the version, the kernel build (code paths, the one in use),
OpenMP threads and the CUDA state (klkit.show_config)."""


def add_parser(sub, name):
    return sub.add_parser(name, help="version, kernel build, threads",
                          description=__doc__)


def run(args):
    import klkit

    klkit.show_config()
    return 0
