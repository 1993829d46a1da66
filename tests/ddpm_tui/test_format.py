"""How a run's speed, memory and load read on one line (ddpm_tui/format.py), for `ddpm show`
and the run screen alike."""

from ddpm_tui.format import megabytes, throughput


def test_the_throughput_line_names_each_figure_a_run_has():
    gpu = {"rss_mb": 1230.0, "cpu_util": 98.4, "gpu_mem_peak_mb": 3480.0, "gpu_util": 87.0, "loss": 0.1}
    assert throughput(412.4, gpu) == "412 images/s · RSS 1.2 GB · CPU 98% · GPU mem 3.4 GB peak · GPU 87%"
    assert throughput(1002.0, {"rss_mb": 870.0, "cpu_util": 199.6}) == "1,002 images/s · RSS 870 MB · CPU 200%"
    assert throughput(5.0, {"rss_peak_mb": 2048.0}) == "5 images/s · RSS 2.0 GB peak"
    assert throughput(None, None) == "- images/s"


def test_megabytes_switch_to_gigabytes_at_one():
    assert [megabytes(v) for v in (0.4, 1023.0, 1024.0, 10 * 1024 + 51)] == ["0 MB", "1023 MB", "1.0 GB", "10.0 GB"]


def test_a_fitted_table_drops_the_least_telling_columns_first_and_never_cuts_the_kept_ones():
    from rich.console import Console

    from ddpm_tui.format import fitted_table

    columns = [("id", "right"), ("name", "left"), ("status", "left"), ("fid", "right"), ("tags", "left"), ("age", "right")]
    rows = [["12", "study/lr=4e-3,objective=v,seed=1", "[green]completed[/]", "21.50", "good,keep", "3m"]]

    def text(width: int) -> list[str]:
        console = Console(width=width, record=True, color_system=None)
        console.print(fitted_table(columns, rows, width, drop=["tags", "age"], keep=["id", "status", "fid"]))
        return [line.rstrip() for line in console.export_text().splitlines()]

    assert text(120)[0].split() == ["id", "name", "status", "fid", "tags", "age"]  # room for all
    assert text(65)[0].split() == ["id", "name", "status", "fid", "age"]  # tags go first
    narrow = text(44)
    assert narrow[0].split() == ["id", "name", "status", "fid"]
    assert "completed" in narrow[1] and "21.50" in narrow[1] and "…" not in " ".join(narrow)  # the name folds instead
    assert "".join(line[4:21].strip() for line in narrow[1:]).startswith("study/lr=4e-3")
