def main() -> None:
    raise SystemExit("zhtw-corpus: not implemented yet")
