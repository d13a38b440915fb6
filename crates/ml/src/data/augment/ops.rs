//! The op list: what each [`AugOp`] means, how a list is checked, and the sizes it produces.

/// One per-sample op. Sizes are `width × height` in pixels; angles in degrees
/// (positive = counter-clockwise); probabilities in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub enum AugOp {
    /// Stretch to exactly `width × height`.
    Resize { width: u32, height: u32 },
    /// torchvision `RandomResizedCrop`: a box of `scale` × area and aspect `ratio`
    /// (log-uniform), resized to `width × height`.
    RandomResizedCrop { width: u32, height: u32, scale: [f64; 2], ratio: [f64; 2] },
    /// A centred `width × height` box (zero-padded where the image is smaller).
    CenterCrop { width: u32, height: u32 },
    /// Mirror left-right with probability `p`.
    Hflip { p: f64 },
    /// Rotate by a uniform angle in [-degrees, degrees], or by exactly `degrees` when
    /// `random` is false; bilinear, same size, corners filled with 0.
    Rotate { degrees: f64, random: bool },
    /// Factors drawn uniformly from [max(0, 1 - x), 1 + x] and applied in a random order.
    Jitter { brightness: f64, contrast: f64, saturation: f64 },
    /// `(v - mean) / std` per channel.
    Normalize { mean: [f64; 3], std: [f64; 3] },
    /// torchvision `RandomErasing` (value 0): with probability `p`, zero a box of `scale` ×
    /// area and aspect `ratio`.
    RandomErasing { p: f64, scale: [f64; 2], ratio: [f64; 2] },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AugError {
    #[error("augment op {index} (`{op}`): {reason}")]
    InvalidOp { index: usize, op: &'static str, reason: String },
    #[error("input image has {found} bytes, {width}x{height}x3 needs {expected}")]
    InputSize { width: usize, height: usize, expected: usize, found: usize },
    #[error("output buffer has {found} values, the pipeline produces {expected}")]
    OutputSize { expected: usize, found: usize },
    #[error("resize failed: {0}")]
    Resize(String),
}

impl AugOp {
    pub fn name(&self) -> &'static str {
        match self {
            AugOp::Resize { .. } => "resize",
            AugOp::RandomResizedCrop { .. } => "random_resized_crop",
            AugOp::CenterCrop { .. } => "center_crop",
            AugOp::Hflip { .. } => "hflip",
            AugOp::Rotate { .. } => "rotate",
            AugOp::Jitter { .. } => "jitter",
            AugOp::Normalize { .. } => "normalize",
            AugOp::RandomErasing { .. } => "random_erasing",
        }
    }

    /// The size this op turns a `w × h` image into.
    pub fn output_size(&self, w: usize, h: usize) -> (usize, usize) {
        match *self {
            AugOp::Resize { width, height } | AugOp::RandomResizedCrop { width, height, .. } | AugOp::CenterCrop { width, height } => {
                (width as usize, height as usize)
            }
            _ => (w, h),
        }
    }

    fn check(&self) -> Result<(), String> {
        let prob = |p: f64| {
            if (0.0..=1.0).contains(&p) { Ok(()) } else { Err(format!("probability {p} is outside [0, 1]")) }
        };
        let range = |what: &str, r: [f64; 2], positive: bool| {
            let ok = r[0].is_finite() && r[1].is_finite() && r[0] <= r[1];
            if !ok || (positive && r[0] <= 0.0) || r[0] < 0.0 {
                Err(format!("{what} [{}, {}] is not a valid range", r[0], r[1]))
            } else {
                Ok(())
            }
        };
        match *self {
            AugOp::Resize { width, height } | AugOp::RandomResizedCrop { width, height, .. } | AugOp::CenterCrop { width, height }
                if width == 0 || height == 0 =>
            {
                Err(format!("empty size {width}x{height}"))
            }
            AugOp::RandomResizedCrop { scale, ratio, .. } => {
                range("scale", scale, true)?;
                range("ratio", ratio, true)
            }
            AugOp::Hflip { p } => prob(p),
            AugOp::Rotate { degrees, .. } if !degrees.is_finite() => Err(format!("angle {degrees} is not finite")),
            AugOp::Jitter { brightness, contrast, saturation } => {
                for (name, x) in [("brightness", brightness), ("contrast", contrast), ("saturation", saturation)] {
                    if !(x.is_finite() && x >= 0.0) {
                        return Err(format!("{name} {x} must be a finite value ≥ 0"));
                    }
                }
                Ok(())
            }
            AugOp::Normalize { mean, std } => {
                if mean.iter().chain(&std).any(|v| !v.is_finite()) || std.contains(&0.0) {
                    Err("mean and std must be finite and std non-zero".into())
                } else {
                    Ok(())
                }
            }
            AugOp::RandomErasing { p, scale, ratio } => {
                prob(p)?;
                range("scale", scale, true)?;
                range("ratio", ratio, true)
            }
            _ => Ok(()),
        }
    }
}

/// Checks each op and their order (jitter works on [0, 1] values, so not after normalise).
pub fn validate_ops<'a>(ops: impl IntoIterator<Item = &'a AugOp>) -> Result<(), AugError> {
    let mut normalised = false;
    for (index, op) in ops.into_iter().enumerate() {
        let invalid = |reason: String| AugError::InvalidOp { index, op: op.name(), reason };
        op.check().map_err(invalid)?;
        match op {
            AugOp::Normalize { .. } => normalised = true,
            AugOp::Jitter { .. } if normalised => {
                return Err(invalid("jitter must come before normalize".into()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The output size of `ops` on a `w × h` input.
pub fn output_size<'a>(ops: impl IntoIterator<Item = &'a AugOp>, w: usize, h: usize) -> (usize, usize) {
    ops.into_iter().fold((w, h), |(w, h), op| op.output_size(w, h))
}
