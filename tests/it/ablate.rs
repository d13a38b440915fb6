//! `maskflow ablate`: three changes built to help, do nothing and hurt on the tiny model and
//! synthetic data; the report must rank and judge them so, share every common step, rerun as
//! all hits, list its arms in `runs`, and draw its intervals in a real browser.

use crate::common::{self, Space};
use crate::report_browser::{chromium, headless};

/// A: one epoch, no dropout. B: six epochs (helps: the synthetic signal rewards training),
/// another submission file name (no effect on any metric), dropout 0.9 (hurts).
const A: &str = "\
data synthetic { persons = 60; eval_persons = 4; seed = 3; size = 48x64 }
split by person { val = 0.3; stratify = [gender]; seed = 42 }
prepare { size = 24x32 }
model tiny_cnn { dropout = 0.0 }
train { epochs = 1; batch = 8 }
evaluate {}
predict { output = \"submission.csv\" }
";

fn space() -> Space {
    let s = Space::new();
    s.write("a.mf", A);
    s.write(
        "b.mf",
        &A.replace("epochs = 1", "epochs = 6").replace("dropout = 0.0", "dropout = 0.9").replace("submission.csv", "final.csv"),
    );
    s
}

/// The report part of `ablate`'s output (after the step lines), the run id normalised.
fn table(stdout: &str) -> String {
    let start = stdout.find("a.mf → b.mf").expect("the report");
    stdout[start..]
        .lines()
        .map(|l| match l.strip_prefix("results in saved/b-ablate/") {
            Some(_) => "results in saved/b-ablate/RUN-ID".to_string(),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn ablate_ranks_a_helpful_a_neutral_and_a_harmful_change_and_shares_every_common_step() {
    let s = space();
    let plan = s.run(&["ablate", "a.mf", "b.mf", "--plan"]);
    assert!(plan.ok().starts_with("a.mf → b.mf: 3 changes, 8 arms\n"), "{}", plan.stdout);
    let run = s.run(&["ablate", "a.mf", "b.mf", "--jobs", "2"]);
    let out = run.ok();
    // Shared steps ran once: one data chain, and one training per distinct training setting
    // (A, B, A+dropout = B-epochs, B-dropout = A+epochs).
    let count =
        |kind: &str| out.lines().filter(|l| l.starts_with(&format!("run {kind}")) && l[4 + kind.len()..].starts_with(['[', ':'])).count();
    assert_eq!([count("source"), count("relabel"), count("split"), count("prepare")], [1, 1, 1, 1], "{out}");
    assert_eq!((count("train"), count("evaluate")), (4, 4), "{out}");
    common::assert_golden("ablate_three_changes", &table(out));
    let json: serde_json::Value = serde_json::from_str(s.run(&["ablate", "a.mf", "b.mf", "--json"]).ok()).unwrap();
    let verdicts: Vec<(&str, &str)> =
        json["changes"].as_array().unwrap().iter().map(|c| (c["change"].as_str().unwrap(), c["verdict"].as_str().unwrap())).collect();
    assert_eq!(
        verdicts,
        [
            ("train.epochs 1 → 6", "helps"),
            ("predict.output \"submission.csv\" → \"final.csv\"", "within noise"),
            ("model.dropout 0.0 → 0.9", "hurts")
        ]
    );
    // Again: all hits. `runs` lists the arms' evaluations (A, B and the two new trainings).
    let again = s.run(&["ablate", "a.mf", "b.mf"]);
    assert!(again.ok().lines().filter(|l| l.starts_with("run ")).count() == 0, "{}", again.stdout);
    let rows: serde_json::Value = serde_json::from_str(s.run(&["runs", "--json"]).ok()).unwrap();
    let ablation_rows = rows.as_array().unwrap().iter().filter(|r| r["pipeline"] == "ablate:b.mf").count();
    assert_eq!(ablation_rows, 4, "{rows:#}");
}

#[test]
fn ablation_html_draws_each_interval_against_zero_in_headless_chromium() {
    if std::env::var_os("MASKFLOW_SKIP_BROWSER").is_some() {
        eprintln!("skipped: MASKFLOW_SKIP_BROWSER is set");
        return;
    }
    let browser = chromium().expect("this test needs headless Chromium: `apt-get install chromium` (or set MASKFLOW_SKIP_BROWSER=1)");
    let s = space();
    s.run(&["ablate", "a.mf", "b.mf", "--html", "ablation.html"]).ok();
    let page = s.path("ablation.html").canonicalize().unwrap();
    let dom = headless(&browser, s.dir.path(), &page, &["--dump-dom", "--virtual-time-budget=1000"]);
    assert_eq!(dom.matches("<figure class=\"interval\"").count(), 6, "two intervals per change: {dom}");
    let shot = s.path("shot.png");
    headless(&browser, s.dir.path(), &page, &[&format!("--screenshot={}", shot.display()), "--window-size=1400,500"]);
    let img = image::open(&shot).unwrap().to_rgb8();
    let near = |p: &image::Rgb<u8>, c: [u8; 3]| p.0.iter().zip(c).all(|(a, b)| (*a as i32 - b as i32).abs() < 30);
    let green = img.pixels().filter(|p| near(p, [0x1a, 0x7f, 0x37])).count();
    let red = img.pixels().filter(|p| near(p, [0xcf, 0x22, 0x2e])).count();
    // A helping interval (green, above zero) and a hurting one (red) are drawn as bars.
    assert!(green > 100 && red > 100, "green {green}, red {red} pixels");
}
