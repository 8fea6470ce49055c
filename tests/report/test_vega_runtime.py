"""The Vega runtime a report's HTML embeds is built by vl-convert once per installed version and kept in
the user's cache folder: the same bytes as a fresh build, read back by the next process."""

import vl_convert as vlc

from engine.report import render


def fresh(monkeypatch, cache_home):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    render.vega_runtime.cache_clear()


def test_the_runtime_is_built_once_kept_on_disk_and_read_back(tmp_path, monkeypatch):
    fresh(monkeypatch, tmp_path)
    built = render.vega_runtime()
    assert built == vlc.javascript_bundle(render.EMBED_SNIPPET).replace("</script", "<\\/script")
    assert "</script" not in built and "vega-specs" in built
    (kept,) = (tmp_path / "llm-study-engine" / "vega").glob("vega-embed-*.js")
    assert kept.read_text() == built

    # A new process (the in-process cache cleared) reads the file and does not build again.
    render.vega_runtime.cache_clear()
    monkeypatch.setattr(vlc, "javascript_bundle", lambda *a: (_ for _ in ()).throw(AssertionError("built again")))
    assert render.vega_runtime() == built
    render.vega_runtime.cache_clear()


def test_an_unwritable_cache_folder_still_gives_the_runtime(tmp_path, monkeypatch):
    (tmp_path / "llm-study-engine").write_text("a file where the folder would be")
    fresh(monkeypatch, tmp_path)
    built = render.vega_runtime()
    assert "vega-specs" in built and "</script" not in built
    render.vega_runtime.cache_clear()
