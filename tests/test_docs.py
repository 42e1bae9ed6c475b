"""rtl_gen.docs: the helpers the benches write results.md with."""

from rtl_gen import docs


def test_bench_command_quotes_what_the_shell_would_split():
    assert docs.bench_command("bench/x.py", ["--n", "256"]) == "python bench/x.py --n 256"
    assert docs.bench_command("bench/x.py", ["--out", "a b"]) == "python bench/x.py --out 'a b'"
    # An empty argument list is the command without arguments, not sys.argv.
    assert docs.bench_command("bench/x.py", []) == "python bench/x.py"


def test_write_section_replaces_the_section_only(tmp_path, capsys):
    path = tmp_path / "results.md"
    path.write_text("# R\n\n## A\n\nold\n\n## B\n\nkept\n")
    docs.write_section(path, "## A", "new")
    assert path.read_text() == "# R\n\n## A\n\nnew\n\n## B\n\nkept\n"
    assert "wrote the '## A' section of" in capsys.readouterr().err
