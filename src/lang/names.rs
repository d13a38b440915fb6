//! Name tables of the language (block kinds, their keys in canonical order) and did-you-mean.

/// Top-level blocks, in the order `fmt` writes them.
pub const BLOCKS: &[&str] =
    &["data", "relabel", "split", "prepare", "augment", "oversample", "model", "loss", "train", "evaluate", "predict", "ensemble"];

/// The keys each block accepts, in canonical (`fmt`) order.
pub fn block_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "data" => &["root", "eval", "persons", "eval_persons", "seed", "size", "age_bins", "on_bad_image"],
        "relabel" => &["known", "gender", "age", "swap_incorrect_normal", "file"],
        "split" => &["val", "folds", "stratify", "seed"],
        "prepare" => &["size", "crop"],
        "oversample" => &["copies", "with"],
        "model" => &["pretrained", "heads", "dropout", "drop_path"],
        "loss" => &["gamma", "alpha", "smoothing", "class_weights"],
        "train" => {
            &["epochs", "batch", "optimizer", "schedule", "grad_clip", "cutmix", "mixup", "early_stop", "seed", "backend", "precision"]
        }
        "evaluate" => &["tta"],
        "predict" => &["tta", "output"],
        "ensemble" => &["members", "vote", "weights"],
        _ => &[],
    }
}

/// The closest candidate to `name`, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `unknown X `name`` plus a `; did you mean `y`?` when there is a close candidate.
pub fn unknown(what: &str, name: &str, candidates: &[&str]) -> String {
    match did_you_mean(name, candidates.iter().copied()) {
        Some(s) => format!("unknown {what} `{name}`; did you mean `{s}`?"),
        None => format!("unknown {what} `{name}`"),
    }
}
