"""The figures' shared pieces: the paper's method names, 200-dpi PNG plus PDF, log-axis labels that never overlap."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from lab import plots


def test_method_names_follow_the_paper():
    assert plots.method_name("slm-hn") == "SLM-hn"
    assert plots.method_name("slm-generic") == "SLM generic-only"
    assert plots.method_name("slm-mix (4 experts)") == "SLM-mix (4 experts)"
    assert plots.method_name("toy") == "toy"


def test_save_writes_png_and_pdf(tmp_path):
    fig = plt.figure(figsize=(2, 2))
    plots.save(fig, tmp_path / "f")
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    assert matplotlib.image.imread(tmp_path / "f.png").shape[1] > 300  # 2 inches at 200 dpi, less the margins
    plt.close(fig)


@pytest.mark.parametrize("lo, hi", [(62, 68), (55, 140), (40, 1000), (2e11, 4e11), (1.1e10, 9e11), (1e9, 1e15)])
@pytest.mark.parametrize("axis", [plots.perplexity_yaxis, plots.flops_axis, plots.count_axis])
def test_log_axis_labels_are_few_and_apart(axis, lo, hi):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([lo, hi], [lo, hi])
    axis(ax)
    fig.canvas.draw()
    a = ax.yaxis if axis is plots.perplexity_yaxis else ax.xaxis
    boxes = [t.get_window_extent() for t in a.get_ticklabels(which="both") if t.get_visible() and t.get_text()]
    assert 1 <= len(boxes) <= 9, [t.get_text() for t in a.get_ticklabels(which="both")]
    assert not any(b.overlaps(c) for i, b in enumerate(boxes) for c in boxes[i + 1:])
    plt.close(fig)
