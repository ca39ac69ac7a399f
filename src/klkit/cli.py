"""`python -m klkit` / `klkit`: print the build configuration and a worked
example (the weather distributions) so a newcomer sees the package work."""
import argparse

import numpy as np


def main(argv=None):
    import klkit as kk

    parser = argparse.ArgumentParser(prog="klkit", description=__doc__)
    parser.parse_args(argv)
    kk.show_config()
    p = np.array([0.7, 0.3])   # P: rain 70%, sun 30%
    q = np.array([0.5, 0.5])   # Q: a coin flip
    print()
    print("Worked example: weather P = (0.7, 0.3), Q = (0.5, 0.5), kind='probs'")
    print(f"  KL(P||Q) = {kk.kl_div(p, q, kind='probs'):.4f} nats"
          f" = {kk.kl_div(p, q, kind='probs', base=2):.4f} bits")
    print(f"  KL(Q||P) = {kk.kl_div(q, p, kind='probs'):.4f} nats"
          f" = {kk.kl_div(q, p, kind='probs', base=2):.4f} bits")
    print(f"  H(P)     = {kk.entropy(p, kind='probs', base=2):.4f} bits,"
          f" H(Q) = {kk.entropy(q, kind='probs', base=2):.4f} bits")
    print(f"  JS(P,Q)  = {kk.js_div(p, q, kind='probs', base=2):.4f} bits")
    return 0
