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

#[test]
fn index_html_renders_the_runs_table_in_headless_chromium() {
    if std::env::var_os("MASKFLOW_SKIP_BROWSER").is_some() {
        eprintln!("skipped: MASKFLOW_SKIP_BROWSER is set");
        return;
    }
    let browser = chromium().expect("this test needs headless Chromium: `apt-get install chromium` (or set MASKFLOW_SKIP_BROWSER=1)");
    let s = Space::new();
    s.write("p.mf", &format!("{TINY}predict {{}}\n"));
    s.run(&["run", "p.mf"]).ok();
    // `run` refreshed the page: no separate `runs --html` needed.
    let page = s.path("saved/index.html").canonicalize().unwrap();
    let html = s.read("saved/index.html");
    assert!(html.contains("<table id=\"runs\">"), "{html}");

    let dom = headless(&browser, s.dir.path(), &page, &["--dump-dom", "--virtual-time-budget=2000"]);
    assert!(dom.contains("<h1>maskflow runs</h1>"), "{dom}");
    let table = &dom[dom.find("<table id=\"runs\">").expect("the runs table is in the rendered DOM")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(table.contains("<th>pipeline</th>") && table.contains("macro") && table.contains("<td>p.mf</td>"), "{table}");
    assert!(dom.contains("curves.png") && dom.contains("confusion.png"), "the plots are on the page: {dom}");

    let shot = s.path("screenshot.png");
    headless(&browser, s.dir.path(), &page, &[&format!("--screenshot={}", shot.display()), "--window-size=1200,900"]);
    let img = image::open(&shot).expect("a PNG screenshot").to_rgb8();
    assert_eq!(img.dimensions(), (1200, 900));
    // The table's 1px #ccc grid and the dark text must both be drawn.
    let grid = img.pixels().filter(|p| p.0 == [204, 204, 204]).count();
    let ink = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
    assert!(grid > 500, "table grid pixels: {grid}");
    assert!(ink > 2000, "text pixels: {ink}");
    // Keep the screenshot where a person can look at it (target/ is ignored by git).
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("index-html-screenshot.png");
    let _ = std::fs::copy(&shot, &keep);
    eprintln!("screenshot: {}", keep.display());
}
