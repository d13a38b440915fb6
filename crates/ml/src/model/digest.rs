//! A reproducible fingerprint of a model's weights.
//!
//! The constraint this module keeps: the digest depends only on tensor paths, dtypes, shapes
//! and values, in the module's fixed visit order — never on file bytes (burn's `.mpk`/`.bpk`
//! files embed random parameter ids, so identical weights give different files).

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn_store::ModuleSnapshot;

/// blake3 over every tensor (parameters and BatchNorm running statistics) in visit order:
/// for each, its path, dtype, shape and raw little-endian bytes, length-prefixed.
pub fn weights_digest<B: Backend, M: Module<B>>(model: &M) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for snapshot in model.collect(None, None, false) {
        let path = snapshot.full_path();
        field(&mut hasher, path.as_bytes());
        field(&mut hasher, format!("{:?}", snapshot.dtype).as_bytes());
        for d in snapshot.shape.iter() {
            hasher.update(&(*d as u64).to_le_bytes());
        }
        match snapshot.to_data() {
            Ok(data) => field(&mut hasher, data.as_bytes()),
            // A snapshot of an in-memory module cannot fail to materialise; hash the failure
            // anyway so that it can never collide with real data.
            Err(e) => field(&mut hasher, format!("error: {e:?}").as_bytes()),
        }
    }
    *hasher.finalize().as_bytes()
}

/// Hex form of a digest.
pub fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn field(hasher: &mut blake3::Hasher, bytes: &[u8]) {
    hasher.update(&(bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}
