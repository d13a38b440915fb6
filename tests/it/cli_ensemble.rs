//! Ensembles: member pipelines are planned into one graph; changing one member reruns only it.

use crate::common;
use common::Space;

const MEMBER: &str = "\
data synthetic { persons = 24; eval_persons = 3; seed = 11; size = 48x64 }
split by person { val = 0.25; stratify = [gender] }
prepare { size = 24x32 }
model tiny_cnn { dropout = 0.0 }
train { epochs = 1; batch = 16; seed = SEED }
predict {}
";

fn member(seed: u32) -> String {
    MEMBER.replace("SEED", &seed.to_string())
}

#[test]
fn ensemble_votes_over_members_and_reruns_only_the_changed_one() {
    let s = Space::new();
    s.write("a.mf", &member(1));
    s.write("b.mf", &member(2));
    s.write("ens.mf", "extends \"a.mf\"\nensemble { members = [\"b.mf\"]; vote = soft }\n");
    let first = s.run(&["run", "ens.mf"]);
    let lines = first.step_lines();
    let names: Vec<&str> = lines.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "run source",
            "run relabel",
            "run split",
            "run prepare",
            "run train",
            "run evaluate",
            "run predict",
            "run b/train",
            "run b/evaluate",
            "run b/predict",
            "run ensemble"
        ],
        "{}",
        first.stdout
    );
    assert!(lines.last().unwrap().ends_with("soft vote over 2 members, 21 eval images"), "{}", first.stdout);
    let submission = s.read("saved/ens/latest/submission.csv");
    assert_eq!(submission.lines().count(), 22);
    // A change to member b reruns b's model steps and the vote, nothing else.
    s.write("b.mf", &member(3));
    let second = s.run(&["run", "ens.mf"]);
    let ran: Vec<String> =
        second.step_lines().iter().filter(|l| l.starts_with("run ")).map(|l| l.split(':').next().unwrap().to_string()).collect();
    assert_eq!(ran, ["run b/train", "run b/evaluate", "run b/predict", "run ensemble"], "{}", second.stdout);
}

#[test]
fn an_ensemble_member_without_predict_is_an_error() {
    let s = Space::new();
    s.write("a.mf", &member(1));
    s.write("b.mf", &member(2).replace("predict {}\n", ""));
    s.write("ens.mf", "extends \"a.mf\"\nensemble { members = [\"b.mf\"] }\n");
    let out = s.run(&["plan", "ens.mf"]);
    assert_eq!(out.fails(), "error: b.mf: an ensemble member needs a `predict` block\n");
}
