//! `saved/index.html` in a real browser: a tiny pipeline runs end to end (train, evaluate,
//! predict), `maskflow run` refreshes the page, and headless Chromium (Debian package
//! `chromium`) renders it. The test keeps the screenshot and checks both the rendered DOM
//! (the runs table with the run's row, the plots loaded) and the pixels (the table's grid
//! and text are drawn).
//!
//! Needs `chromium` on PATH (`.ci/run` installs it). Without it the test fails, saying so;
//! `MASKFLOW_SKIP_BROWSER=1` skips it explicitly on machines that cannot have a browser.

use crate::common;

use common::{Space, TINY};
use std::path::Path;
use std::process::Command;

pub fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .map(str::to_string)
}

/// Runs headless Chromium on `page` with `args`; returns stdout.
pub fn headless(browser: &str, home: &Path, page: &Path, args: &[&str]) -> String {
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars", "--allow-file-access-from-files"])
        .arg(format!("--user-data-dir={}", home.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .env("HOME", home)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pixels of `img` within `tol` of `rgb` on every channel.
fn count_near(img: &image::RgbImage, rgb: [u8; 3], tol: u8) -> usize {
    img.pixels().filter(|p| p.0.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= tol)).count()
}

/// Screenshots `page` (kept under `target/tmp/` as `name`, for a person to look at).
fn screenshot(browser: &str, s: &Space, page: &Path, name: &str, size: (u32, u32)) -> image::RgbImage {
    let shot = s.path(name);
    headless(browser, s.dir.path(), page, &[&format!("--screenshot={}", shot.display()), &format!("--window-size={},{}", size.0, size.1)]);
    let img = image::open(&shot).expect("a PNG screenshot").to_rgb8();
    assert_eq!(img.dimensions(), size);
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::copy(&shot, &keep);
    eprintln!("screenshot: {}", keep.display());
    img
}

/// The text of every SVG `<text>` in a DOM.
fn svg_texts(dom: &str) -> Vec<String> {
    dom.split("<text").skip(1).filter_map(|t| Some(t.split_once('>')?.1.split("</text>").next()?.trim().to_string())).collect()
}

#[test]
fn index_html_renders_the_runs_table_in_headless_chromium() {
    if std::env::var_os("MASKFLOW_SKIP_BROWSER").is_some() {
        eprintln!("skipped: MASKFLOW_SKIP_BROWSER is set");
        return;
    }
    let browser = chromium().expect("this test needs headless Chromium: `apt-get install chromium` (or set MASKFLOW_SKIP_BROWSER=1)");
    let s = Space::new();
    let two_epochs = TINY.replace("epochs = 1", "epochs = 2");
    s.write("p.mf", &format!("{two_epochs}predict {{}}\n"));
    s.write("q.mf", &format!("{}predict {{}}\n", two_epochs.replace("batch = 8 }", "batch = 8; optimizer = adamw(lr = 3e-3) }")));
    s.write("sweep.mf", &two_epochs.replace("batch = 8 }", "batch = 8; optimizer = adamw(lr = sweep[1e-3, 3e-3, 1e-2]) }"));
    s.run(&["run", "p.mf"]).ok();
    s.run(&["run", "q.mf"]).ok();
    s.run(&["run", "sweep.mf"]).ok();
    // `run` refreshed the page: no separate `runs --html` needed.
    let page = s.path("saved/index.html").canonicalize().unwrap();
    let html = s.read("saved/index.html");
    assert!(html.contains("<table id=\"runs\">"), "{html}");

    let dom = headless(&browser, s.dir.path(), &page, &["--dump-dom", "--virtual-time-budget=2000"]);
    assert!(dom.contains("<h1>maskflow runs</h1>"), "{dom}");
    let table = &dom[dom.find("<table id=\"runs\">").expect("the runs table is in the rendered DOM")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains("<th>pipeline</th>") && table.contains("macro") && table.contains("<td>sweep.mf</td>"), "{table}");
    // The page holds the pipelines under pipelines/ (none here) and the one just run; every
    // row but the best links to its run and to its comparison with the best.
    assert_eq!(table.matches("<td>sweep.mf</td>").count(), 3, "{table}");
    assert_eq!(table.matches(">diff vs best</a>").count(), 2, "{table}");
    assert!(table.contains("href=\"sweep/latest/\""), "{table}");
    let texts = svg_texts(&dom);
    let has = |t: &str| texts.iter().any(|x| x == t);
    for title in ["epoch", "loss", "val macro-F1", "learning rate", "predicted", "true", "per-class F1", "mask", "gender", "age"] {
        assert!(has(title), "axis or chart title `{title}` missing: {texts:?}");
    }
    for entry in ["train loss", "val loss", "val macro-F1"] {
        assert!(has(entry), "legend entry `{entry}` missing");
    }
    for class in ["wear·M·&lt;30", "incorrect·F·30–59", "normal·F·≥60"] {
        assert!(texts.iter().any(|t| t.ends_with(class)), "class name `{class}` missing in the confusion matrix");
    }
    // The sweep's overlay: one val macro-F1 curve per variant, named in the legend.
    let overlay = &dom[dom.find("id=\"overlay-sweep.mf\"").expect("the sweep's overlay")..];
    let overlay = &overlay[..overlay.find("</figure>").unwrap()];
    for lr in ["1e-3", "3e-3", "0.01"] {
        for curve in ["val macro-F1", "val loss"] {
            let entry = format!("sweep.mf[train.optimizer.lr={lr}] · {curve}");
            assert_eq!(svg_texts(overlay).iter().filter(|t| **t == entry).count(), 1, "{entry}: {:?}", svg_texts(overlay));
        }
    }

    let img = screenshot(&browser, &s, &page, "index-html-screenshot.png", (1400, 4200));
    // The table's 1px #ccc grid, dark text, the confusion matrix's blue cells and the green F1 curve.
    assert!(count_near(&img, [204, 204, 204], 0) > 500, "table grid");
    assert!(img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count() > 2000, "text");
    assert!(count_near(&img, [30, 150, 60], 20) > 300, "the val macro-F1 curve is drawn");
    assert!(img.pixels().filter(|p| p.0[2] > 120 && p.0[0] < 100 && p.0[1] < 140).count() > 5000, "the confusion matrix's cells are drawn");

    // The comparison page of two runs.
    let diff = s.run(&["diff", "p.mf", "q.mf"]);
    assert!(diff.ok().ends_with("page: saved/diff/p-vs-q.html\n"), "{}", diff.stdout);
    let page = s.path("saved/diff/p-vs-q.html").canonicalize().unwrap();
    let dom = headless(&browser, s.dir.path(), &page, &["--dump-dom", "--virtual-time-budget=2000"]);
    assert!(dom.contains("<li>train.optimizer.lr 0.001 → 0.003</li>"), "the change, in the user's words");
    let texts = svg_texts(&dom);
    let has = |t: &str| texts.iter().any(|x| x == t);
    for title in
        ["per-class F1, sorted by change (B − A)", "macro-F1 change (B − A)", "confusion B − A (green: better, red: worse)", "A", "B"]
    {
        assert!(has(title), "`{title}` missing: {texts:?}");
    }
    assert!(has("A: p.mf · val macro-F1") && has("B: q.mf · val macro-F1"), "both runs' curves: {texts:?}");
    let img = screenshot(&browser, &s, &page, "diff-page-screenshot.png", (1400, 3000));
    assert!(count_near(&img, [230, 120, 20], 10) > 500, "B's bars and curves are drawn");
    assert!(count_near(&img, [120, 140, 170], 10) > 300, "A's bars are drawn");
}
