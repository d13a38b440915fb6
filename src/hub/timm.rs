//! timm's pretrained tags for the EfficientNets maskflow builds, as timm itself lists them.
//!
//! Looked up in timm's `timm/models/efficientnet.py` (`default_cfgs`, timm 1.0.x), never
//! guessed: every tag below has `hf_hub_id='timm/'`, so its weights live in the hub repo
//! `timm/<arch>.<tag>` as `model.safetensors`. timm's default tag for an architecture (what
//! `timm.create_model(arch, pretrained=True)` loads) is the first tag listed with weights; it
//! is first here too. `efficientnet_b6` and `efficientnet_b7` have no timm weights (only the
//! TensorFlow-ported `tf_efficientnet_*`, a different padding scheme), so they have no tags.

/// `(architecture, tags)`, the default tag first.
pub const TAGS: &[(&str, &[&str])] = &[
    ("efficientnet_b0", &["ra_in1k", "ra4_e3600_r224_in1k"]),
    ("efficientnet_b1", &["ra4_e3600_r240_in1k", "ft_in1k"]),
    ("efficientnet_b2", &["ra_in1k"]),
    ("efficientnet_b3", &["ra2_in1k"]),
    ("efficientnet_b4", &["ra2_in1k"]),
    ("efficientnet_b5", &["sw_in12k_ft_in1k", "sw_in12k"]),
    ("efficientnet_b6", &[]),
    ("efficientnet_b7", &[]),
];

/// A timm model name (`efficientnet_b4` or `efficientnet_b4.ra2_in1k`) as its hub repo
/// (`timm/efficientnet_b4.ra2_in1k`) and architecture, the default tag filled in. The error
/// says what the known names are.
pub fn repo_for(name: &str) -> Result<(String, &'static str), String> {
    let (arch, tag) = match name.split_once('.') {
        Some((a, t)) => (a, Some(t)),
        None => (name, None),
    };
    let Some((arch, tags)) = TAGS.iter().find(|(a, _)| *a == arch) else {
        let known: Vec<&str> = TAGS.iter().map(|(a, _)| *a).collect();
        return Err(format!("`{arch}` is not a timm EfficientNet maskflow can build; known: {}", known.join(", ")));
    };
    if tags.is_empty() {
        return Err(format!(
            "timm has no pretrained weights for `{arch}` (only the TensorFlow ports, tf_{arch}, which maskflow does not build); \
             use another architecture or `pretrained = \"hf://ORG/REPO\"`"
        ));
    }
    let tag = match tag {
        None => tags[0],
        Some(t) => match tags.iter().find(|k| **k == t) {
            Some(k) => *k,
            None => {
                let listed: Vec<String> = tags.iter().map(|k| format!("{arch}.{k}")).collect();
                return Err(format!("timm has no weights tagged `{arch}.{t}`; its tags are {}", listed.join(", ")));
            }
        },
    };
    Ok((format!("timm/{arch}.{tag}"), arch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tag_is_timms_first_and_unknown_tags_are_listed() {
        assert_eq!(repo_for("efficientnet_b4").unwrap(), ("timm/efficientnet_b4.ra2_in1k".to_string(), "efficientnet_b4"));
        assert_eq!(repo_for("efficientnet_b1").unwrap().0, "timm/efficientnet_b1.ra4_e3600_r240_in1k");
        assert_eq!(repo_for("efficientnet_b0.ra4_e3600_r224_in1k").unwrap().0, "timm/efficientnet_b0.ra4_e3600_r224_in1k");
        let e = repo_for("efficientnet_b0.ra2_in1k").unwrap_err();
        assert!(e.contains("efficientnet_b0.ra_in1k, efficientnet_b0.ra4_e3600_r224_in1k"), "{e}");
        assert!(repo_for("efficientnet_b7").unwrap_err().contains("no pretrained weights"));
        assert!(repo_for("resnet50").unwrap_err().contains("known: efficientnet_b0"));
    }
}
