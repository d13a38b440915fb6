//! TensorBoard event files of a training history, so `tensorboard --logdir saved/` compares
//! every run, variant and fold.
//!
//! The format is TensorFlow's record file: each record is its length (u64, little-endian), the
//! masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data. The data is
//! an `Event` protobuf; the first carries `file_version = "brain.Event:2"`, each later one an
//! epoch's scalars as `Summary.Value { tag, simple_value }` at `step` = the 1-based epoch:
//!
//! | tag              | value                                         |
//! |------------------|-----------------------------------------------|
//! | `loss/train`     | the configured training loss, epoch mean       |
//! | `loss/val`       | validation cross-entropy                       |
//! | `f1/val_macro`   | validation macro-F1 (18 classes)               |
//! | `f1/val_mask`, `f1/val_gender`, `f1/val_age` | per-task validation macro-F1 |
//! | `f1/train_macro` | macro-F1 of the training predictions           |
//! | `accuracy/val`   | validation accuracy                            |
//! | `lr`             | the learning rate at the epoch's last step     |
//!
//! Written from the history in the cache when results are published, so a cache hit
//! republishes them without training. Wall times are the publishing time plus one second per
//! epoch (the history keeps no clock times: its bytes must not depend on when it ran).

use crate::train::EpochRecord;

/// The tags and values of one epoch, in the order above.
pub fn scalars(e: &EpochRecord) -> Vec<(&'static str, f64)> {
    vec![
        ("loss/train", e.train_loss),
        ("loss/val", e.val_loss),
        ("f1/val_macro", e.val_f1),
        ("f1/val_mask", e.val_task_f1.mask),
        ("f1/val_gender", e.val_task_f1.gender),
        ("f1/val_age", e.val_task_f1.age),
        ("f1/train_macro", e.train_f1),
        ("accuracy/val", e.val_accuracy),
        ("lr", e.lr),
    ]
}

/// The bytes of an event file for `history`, starting at `wall_time` (seconds since the epoch).
pub fn event_file(history: &[EpochRecord], wall_time: f64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut first = Vec::new();
    put_double(&mut first, 1, wall_time);
    put_bytes(&mut first, 3, b"brain.Event:2");
    record(&mut out, &first);
    for (i, e) in history.iter().enumerate() {
        let mut summary = Vec::new();
        for (tag, value) in scalars(e) {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_float(&mut v, 2, value as f32);
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time + 1.0 + i as f64);
        put_varint_field(&mut event, 2, (e.epoch + 1) as u64);
        put_bytes(&mut event, 5, &summary);
        record(&mut out, &event);
    }
    out
}

/// The file name TensorBoard looks for: `events.out.tfevents.<seconds>.<host>`.
pub fn file_name(wall_time: f64) -> String {
    format!("events.out.tfevents.{}.maskflow", wall_time as u64)
}

fn record(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}

fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_varint(out, (u64::from(field) << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_float(out: &mut Vec<u8>, field: u32, v: f32) {
    put_varint(out, (u64::from(field) << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise: event files are small.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// TensorFlow's masking, so a CRC of data that holds CRCs stays informative.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        // RFC 3720 (iSCSI) B.4 and the usual "123456789" check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn records_frame_their_data() {
        let bytes = event_file(&[], 1.5);
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), 8 + 4 + len + 4);
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), masked_crc32c(&bytes[..8]));
        assert_eq!(u32::from_le_bytes(bytes[12 + len..].try_into().unwrap()), masked_crc32c(&bytes[12..12 + len]));
    }
}
