//! Files shared in a room: what a file is (from its bytes, never from what the client says),
//! images with their size and without their metadata (EXIF, XMP, text chunks: camera, time,
//! location), and where they are kept in the [`FileStore`] (content-addressed by SHA-256 within
//! each room; how long they are kept is `file_keeping.rs`).
//!
//! Each room's file is up to three objects under `rooms/<room>/`: `<sha256>` the bytes,
//! `<sha256>.thumb` an image's thumbnail, and `<sha256>.json` the file's description, which is
//! also what lets a member of that room, and only of that room, download it. The same file
//! shared in two rooms is stored twice: each room's copy goes when that room no longer needs
//! it, without asking the other rooms (and no room learns what another holds).

use bytes::Bytes;
use image::ImageDecoder;
use img_parts::{jpeg, png, webp, ImageEXIF};
use sha2::{Digest, Sha256};

use crate::error::{AppError, AppResult};
use crate::file_keeping::claim_of;
use crate::model::{
    Attachment, AttachmentPublic, FileChoice, FileMeta, MessageId, RoomId, User, UserId,
    INLINE_IMAGES,
};
use crate::ports::FileStore;
use crate::service::ChatService;

/// A file ready to store: its bytes (metadata stripped), its description, and for an image
/// larger than a thumbnail, its thumbnail.
#[derive(Debug)]
pub struct Inspected {
    pub bytes: Bytes,
    pub meta: FileMeta,
    pub thumbnail: Option<Bytes>,
}

/// An upload under way: its room, and the slot it holds until it is stored (see
/// [`ChatService::upload_slot`]).
pub struct UploadSlot<'a> {
    room: RoomId,
    user: UserId,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

/// The box a thumbnail fits in (what the web client shows in a message).
pub const THUMBNAIL_BOX: (u32, u32) = (320, 240);
/// Images decoded for a thumbnail at most: larger ones (or decompression bombs) are stored
/// without one. Each upload holds at most this much while it is inspected.
const DECODE_MAX_PIXELS: u32 = 12_000;
const DECODE_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// Finds what the bytes are, strips an image's metadata, and hashes what will be stored.
/// Refused: an empty file, and programs (executables, libraries, bytecode): a chat room is no
/// place to hand those around, and a browser or a careless click could run them.
pub fn inspect(bytes: Bytes) -> AppResult<Inspected> {
    if bytes.is_empty() {
        return Err(AppError::validation("file", "the file is empty"));
    }
    let kind = infer::get(&bytes);
    if let Some(k) = kind {
        if k.matcher_type() == infer::MatcherType::App {
            return Err(AppError::Unsupported(format!(
                "{} files are not accepted",
                k.mime_type()
            )));
        }
    }
    let content_type = match kind {
        Some(k) => k.mime_type().to_string(),
        None if !bytes.contains(&0) && std::str::from_utf8(&bytes).is_ok() => {
            "text/plain; charset=utf-8".to_string()
        }
        None => "application/octet-stream".to_string(),
    };
    let (bytes, orientation) = strip_metadata(&content_type, bytes)?;
    let (width, height) = if INLINE_IMAGES.contains(&content_type.as_str()) {
        let size = imagesize::blob_size(&bytes)
            .map_err(|_| AppError::validation("file", "the image cannot be read"))?;
        let (w, h) = (
            u32::try_from(size.width).ok(),
            u32::try_from(size.height).ok(),
        );
        // Orientations 5 to 8 turn the picture a quarter: shown, it is as wide as it is high.
        match orientation {
            Some(5..=8) => (h, w),
            _ => (w, h),
        }
    } else {
        (None, None)
    };
    let key = hex(&Sha256::digest(&bytes));
    let larger = |w: Option<u32>, h: Option<u32>| {
        w.unwrap_or(0) > THUMBNAIL_BOX.0 || h.unwrap_or(0) > THUMBNAIL_BOX.1
    };
    let thumbnail = match larger(width, height) {
        true => thumbnail_of(&bytes),
        false => None,
    };
    let meta = FileMeta {
        key,
        content_type,
        size: bytes.len() as u64,
        width,
        height,
        thumbnail: thumbnail.as_ref().map(|(t, _)| t.to_string()),
    };
    Ok(Inspected {
        bytes,
        meta,
        thumbnail: thumbnail.map(|(_, b)| b),
    })
}

/// A small copy of an image that fits [`THUMBNAIL_BOX`], and its type: JPEG, or PNG when the
/// image has transparency. None when it cannot be decoded within the limits.
fn thumbnail_of(bytes: &[u8]) -> Option<(&'static str, Bytes)> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(DECODE_MAX_PIXELS);
    limits.max_image_height = Some(DECODE_MAX_PIXELS);
    limits.max_alloc = Some(DECODE_MAX_BYTES);
    reader.limits(limits);
    // Turned as the photo says (its EXIF orientation): the thumbnail carries no EXIF.
    let mut decoder = reader.into_decoder().ok()?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).ok()?;
    img.apply_orientation(orientation);
    let small = img.thumbnail(THUMBNAIL_BOX.0, THUMBNAIL_BOX.1);
    let mut out = std::io::Cursor::new(Vec::new());
    if small.color().has_alpha() {
        small.write_to(&mut out, image::ImageFormat::Png).ok()?;
        Some(("image/png", Bytes::from(out.into_inner())))
    } else {
        let rgb = image::DynamicImage::ImageRgb8(small.to_rgb8());
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
        rgb.write_with_encoder(encoder).ok()?;
        Some(("image/jpeg", Bytes::from(out.into_inner())))
    }
}

/// Removes what a photo says about where, when and with what it was taken: EXIF, XMP and IPTC
/// in JPEG (APP1, APP13), EXIF and text chunks in PNG, EXIF and XMP in WebP. The pixels and
/// the colour profile stay, and so does the EXIF orientation (alone), without which a phone's
/// portrait photo would show on its side; it is returned too.
fn strip_metadata(content_type: &str, bytes: Bytes) -> AppResult<(Bytes, Option<u16>)> {
    let unreadable = |_| AppError::validation("file", "the image cannot be read");
    let turned = |exif: Option<Bytes>| exif.as_deref().and_then(orientation_of);
    Ok(match content_type {
        "image/jpeg" => {
            let mut img = jpeg::Jpeg::from_bytes(bytes).map_err(unreadable)?;
            let o = turned(img.exif());
            img.remove_segments_by_marker(jpeg::markers::APP1);
            img.remove_segments_by_marker(jpeg::markers::APP13);
            img.set_exif(o.map(orientation_exif));
            (img.encoder().bytes(), o)
        }
        "image/png" => {
            let mut img = png::Png::from_bytes(bytes).map_err(unreadable)?;
            let o = turned(img.exif());
            for kind in [*b"eXIf", *b"tEXt", *b"iTXt", *b"zTXt", *b"tIME"] {
                img.remove_chunks_by_type(kind);
            }
            img.set_exif(o.map(orientation_exif));
            (img.encoder().bytes(), o)
        }
        "image/webp" => {
            let mut img = webp::WebP::from_bytes(bytes).map_err(unreadable)?;
            let o = turned(img.exif());
            img.remove_chunks_by_id(webp::CHUNK_XMP);
            // Also brings the header's flags in line with the chunks left.
            img.set_exif(o.map(orientation_exif));
            (img.encoder().bytes(), o)
        }
        _ => (bytes, None),
    })
}

/// The orientation (2 to 8; 1 is the default, as is none) in EXIF data (a TIFF structure: its
/// byte order, then the first directory's entries), if it is there and well formed.
fn orientation_of(tiff: &[u8]) -> Option<u16> {
    let little = match tiff.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |i: usize| {
        let b: [u8; 2] = tiff.get(i..i.checked_add(2)?)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |i: usize| {
        let b: [u8; 4] = tiff.get(i..i.checked_add(4)?)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    const ORIENTATION: u16 = 0x0112;
    const SHORT: u16 = 3;
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = usize::from(u16_at(ifd)?);
    (0..entries)
        .find_map(|i| {
            let at = ifd.checked_add(2 + 12 * i)?;
            (u16_at(at)? == ORIENTATION && u16_at(at + 2)? == SHORT).then(|| u16_at(at + 8))?
        })
        .filter(|o| (2..=8).contains(o))
}

/// EXIF data that holds only an orientation: a big-endian TIFF header and one directory of one
/// entry.
fn orientation_exif(o: u16) -> Bytes {
    let mut b = Vec::with_capacity(26);
    b.extend_from_slice(b"MM\0\x2a");
    b.extend_from_slice(&8u32.to_be_bytes()); // the directory follows the header
    b.extend_from_slice(&1u16.to_be_bytes()); // one entry:
    b.extend_from_slice(&0x0112u16.to_be_bytes()); // orientation,
    b.extend_from_slice(&3u16.to_be_bytes()); // a SHORT,
    b.extend_from_slice(&1u32.to_be_bytes()); // one of them,
    b.extend_from_slice(&o.to_be_bytes()); // this one (left-aligned in its 4 bytes)
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&0u32.to_be_bytes()); // no next directory
    Bytes::from(b)
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key as [`inspect`] makes them: 64 lowercase hex digits (anything else is not a file here).
pub fn valid_key(key: &str) -> bool {
    key.len() == 64
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn blob_key(room: RoomId, key: &str) -> String {
    format!("rooms/{room}/{key}")
}

fn thumbnail_key(room: RoomId, key: &str) -> String {
    format!("rooms/{room}/{key}.thumb")
}

fn room_key(room: RoomId, key: &str) -> String {
    format!("rooms/{room}/{key}.json")
}

/// Where a build before per-room storage kept a file's bytes and thumbnail (shared by every
/// room): still served for the messages that carry such files, never deleted.
fn legacy_keys(key: &str) -> (String, String) {
    (format!("blobs/{key}"), format!("thumbs/{key}"))
}

/// A file name fit to show and to put in a download's header: no path, no control characters,
/// at most 200 characters; "file" when nothing is left.
pub fn clean_name(name: Option<&str>) -> String {
    let base = name
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".into()
    } else {
        cleaned.to_string()
    }
}

impl ChatService {
    fn files(&self) -> AppResult<&dyn FileStore> {
        self.ports
            .files
            .as_deref()
            .ok_or_else(|| AppError::NotFound("file sharing is not enabled".into()))
    }

    /// Leave for `user` to upload one file to the room: a member, within their send rate, and
    /// one of the process's `concurrent_uploads` slots free (429 otherwise). Taken before the
    /// body is read, so at most that many files are held in memory at once, and a non-member's
    /// upload is refused before its bytes are.
    pub async fn upload_slot(&self, user: &User, room: RoomId) -> AppResult<UploadSlot<'_>> {
        self.files()?;
        self.require_member(room, user.id).await?;
        let permit = self
            .uploads
            .try_acquire()
            .map_err(|_| AppError::TooManyRequests {
                message: "too many uploads at once; retry shortly".into(),
                retry_after_secs: 1,
            })?;
        // An upload counts against the user's send rate, as the message that shares it will.
        self.sends
            .try_take(user.id)
            .map_err(|wait| AppError::TooManyRequests {
                message: "Too many uploads; slow down".into(),
                retry_after_secs: wait,
            })?;
        Ok(UploadSlot {
            room,
            user: user.id,
            _permit: permit,
        })
    }

    /// Stores a file a member shares in the room (the slot's); answers its description and
    /// download URL. Uploading the same file to the room again stores its bytes once.
    pub async fn upload_file(
        &self,
        slot: UploadSlot<'_>,
        name: Option<&str>,
        bytes: Bytes,
    ) -> AppResult<AttachmentPublic> {
        let (files, room) = (self.files()?, slot.room);
        if bytes.len() > self.limits.max_file_bytes {
            return Err(AppError::TooLarge(format!(
                "files may have at most {} bytes",
                self.limits.max_file_bytes
            )));
        }
        self.upload_bytes
            .try_take_n(slot.user, bytes.len() as f64)
            .map_err(|wait| AppError::TooManyRequests {
                message: format!(
                    "at most {} bytes of files a minute; retry in {wait} s",
                    self.limits.upload_bytes_per_minute
                ),
                retry_after_secs: wait,
            })?;
        // Inspecting and hashing a large file is CPU work: off the async threads.
        let Inspected {
            bytes,
            meta,
            thumbnail,
        } = tokio::task::spawn_blocking(move || inspect(bytes))
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("inspecting an upload: {e}")))??;
        // Held before any object is written: from here on no deletion of this file can start
        // until the hold runs out or a message claims the file.
        self.hold_upload(room, &meta.key).await?;
        let blob = blob_key(room, &meta.key);
        if !files.exists(&blob).await? {
            if let Some(t) = thumbnail {
                files.put(&thumbnail_key(room, &meta.key), t).await?;
            }
            files.put(&blob, bytes).await?;
        }
        let described = serde_json::to_vec(&meta)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("describing a file: {e}")))?;
        files
            .put(&room_key(room, &meta.key), Bytes::from(described))
            .await?;
        Ok(Attachment {
            meta,
            name: clean_name(name),
        }
        .public(room))
    }

    /// The files a message attaches, each one shared in the room (uploaded to it), at most
    /// `max_files_per_message`, none twice; each is claimed for the message (sent by `sender`:
    /// the author, the `client_msg_id` and the message's id; see `file_keeping.rs`). The caller
    /// has checked the sender is a member.
    pub(crate) async fn attached(
        &self,
        room: RoomId,
        chosen: &[FileChoice],
        sender: (UserId, Option<&str>, MessageId),
    ) -> AppResult<Vec<Attachment>> {
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        if chosen.len() > self.limits.max_files_per_message {
            return Err(AppError::validation(
                "attachments",
                format!(
                    "at most {} files per message",
                    self.limits.max_files_per_message
                ),
            ));
        }
        let files = self.files()?;
        let claim = &claim_of(sender.0, sender.1, sender.2);
        let not_here = |key: &str| {
            AppError::validation(
                "attachments",
                format!("no file {key:?} was shared in this room"),
            )
        };
        // Every check of the choice before any claim: a refused send claims nothing.
        for (i, c) in chosen.iter().enumerate() {
            if !valid_key(&c.key) {
                return Err(not_here(&c.key));
            }
            if chosen[..i].iter().any(|o| o.key == c.key) {
                return Err(AppError::validation(
                    "attachments",
                    format!("file {:?} is attached twice", c.key),
                ));
            }
        }
        let mut out: Vec<Attachment> = Vec::with_capacity(chosen.len());
        for c in chosen {
            let found = match self.dir().claim_file(room, &c.key, claim).await? {
                true => files.get(&room_key(room, &c.key)).await?,
                false => None,
            };
            let Some(described) = found else {
                // The claims this send made go back (a retry with a client_msg_id keeps them:
                // they may be those of the message it repeats).
                if sender.1.is_none() {
                    for a in &out {
                        self.dir().release_file(room, &a.meta.key, claim).await?;
                    }
                }
                return Err(not_here(&c.key));
            };
            let meta: FileMeta = serde_json::from_slice(&described).map_err(|e| {
                AppError::Internal(anyhow::anyhow!("reading a file's description: {e}"))
            })?;
            out.push(Attachment {
                meta,
                name: clean_name(c.name.as_deref()),
            });
        }
        Ok(out)
    }

    /// A file shared in the room, for one of its members: its type and bytes (or its
    /// thumbnail's), and its description.
    pub async fn download_file(
        &self,
        user: &User,
        room: RoomId,
        key: &str,
        thumbnail: bool,
    ) -> AppResult<(FileMeta, String, Bytes)> {
        let files = self.files()?;
        self.require_member(room, user.id).await?;
        let missing = || AppError::NotFound("File not found".into());
        if !valid_key(key) {
            return Err(missing());
        }
        let described = files.get(&room_key(room, key)).await?.ok_or_else(missing)?;
        let meta: FileMeta = serde_json::from_slice(&described).map_err(|e| {
            AppError::Internal(anyhow::anyhow!("reading a file's description: {e}"))
        })?;
        let kind = match thumbnail {
            true => meta.thumbnail.clone().ok_or_else(missing)?,
            false => meta.content_type.clone(),
        };
        let (legacy_blob, legacy_thumb) = legacy_keys(key);
        let (object, legacy) = match thumbnail {
            true => (thumbnail_key(room, key), legacy_thumb),
            false => (blob_key(room, key), legacy_blob),
        };
        let bytes = match files.get(&object).await? {
            Some(b) => b,
            None => files.get(&legacy).await?.ok_or_else(missing)?,
        };
        Ok((meta, kind, bytes))
    }

    /// Deletes a room's copy of a file: its description first (it is what grants downloads),
    /// then its thumbnail and bytes.
    pub(crate) async fn delete_file_objects(&self, room: RoomId, key: &str) -> AppResult<()> {
        let files = self.files()?;
        for object in [
            room_key(room, key),
            thumbnail_key(room, key),
            blob_key(room, key),
        ] {
            files.delete(&object).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1×1 JPEG with an EXIF segment naming a place.
    fn jpeg_with_exif() -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8];
        let exif = b"Exif\0\0GPS 52.3676 N 4.9041 E";
        b.extend_from_slice(&[0xFF, 0xE1]);
        b.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        b.extend_from_slice(exif);
        // SOF0: 8-bit, 1×1, one component.
        b.extend_from_slice(&[
            0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00,
        ]);
        // SOS with an empty scan, then EOI.
        b.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        b.extend_from_slice(&[0x00, 0xFF, 0xD9]);
        b
    }

    #[test]
    fn a_photo_loses_its_exif_and_keeps_its_size() {
        let raw = jpeg_with_exif();
        assert!(raw.windows(3).any(|w| w == b"GPS"));
        let got = inspect(Bytes::from(raw.clone())).unwrap();
        assert_eq!(got.meta.content_type, "image/jpeg");
        assert_eq!((got.meta.width, got.meta.height), (Some(1), Some(1)));
        assert!(!got.bytes.windows(3).any(|w| w == b"GPS"), "EXIF gone");
        assert!(got.bytes.len() < raw.len());
        assert_eq!(got.meta.size, got.bytes.len() as u64);
        assert_eq!(got.meta.key, hex(&Sha256::digest(&got.bytes)));
        assert!(valid_key(&got.meta.key));
    }

    /// A PNG of `w` × `h` pixels, opaque or not.
    fn png(w: u32, h: u32, alpha: bool) -> Bytes {
        let img = match alpha {
            true => image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
                w,
                h,
                image::Rgba([10, 200, 30, 128]),
            )),
            false => image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
                w,
                h,
                image::Rgb([10, 200, 30]),
            )),
        };
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        Bytes::from(out.into_inner())
    }

    #[test]
    fn a_large_image_gets_a_thumbnail_in_the_box_and_a_small_one_none() {
        let big = inspect(png(1000, 400, false)).unwrap();
        assert_eq!((big.meta.width, big.meta.height), (Some(1000), Some(400)));
        assert_eq!(big.meta.thumbnail.as_deref(), Some("image/jpeg"));
        let thumb = image::load_from_memory(&big.thumbnail.unwrap()).unwrap();
        assert_eq!(
            (thumb.width(), thumb.height()),
            (320, 128),
            "fits the box, same ratio"
        );
        // Transparency is kept: the thumbnail is a PNG then.
        let clear = inspect(png(300, 900, true)).unwrap();
        assert_eq!(clear.meta.thumbnail.as_deref(), Some("image/png"));
        let thumb = image::load_from_memory(&clear.thumbnail.unwrap()).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (80, 240));
        assert!(thumb.color().has_alpha());
        let small = inspect(png(100, 100, false)).unwrap();
        assert_eq!((small.meta.thumbnail, small.thumbnail), (None, None));
    }

    /// CRC-32 (ISO-HDLC), as PNG chunks carry it.
    fn crc32(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn an_image_too_large_to_decode_is_kept_without_a_thumbnail() {
        // A well-formed PNG whose header claims 20,000 × 20,000 pixels (1.6 GB decoded): a
        // decompression bomb's first step. Its IHDR is rewritten, with its CRC.
        let mut b = png(2, 2, true).to_vec();
        b[16..20].copy_from_slice(&20_000u32.to_be_bytes());
        b[20..24].copy_from_slice(&20_000u32.to_be_bytes());
        let crc = crc32(&b[12..29]);
        b[29..33].copy_from_slice(&crc.to_be_bytes());
        let got = inspect(Bytes::from(b)).unwrap();
        assert_eq!(
            (got.meta.width, got.meta.height),
            (Some(20_000), Some(20_000))
        );
        assert_eq!(got.meta.thumbnail, None);
    }

    /// A `w` × `h` JPEG whose EXIF says "turn 90° clockwise to show" (orientation 6) and names
    /// a place in its description.
    fn portrait_photo(w: u32, h: u32) -> Bytes {
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb([9, 9, 9])))
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .unwrap();
        let text = b"GPS 52.3676 N\0";
        let mut tiff = b"MM\0\x2a".to_vec();
        tiff.extend_from_slice(&8u32.to_be_bytes());
        tiff.extend_from_slice(&2u16.to_be_bytes());
        // ImageDescription, ASCII, its text after the directory (8 + 2 + 2 × 12 + 4 = 38).
        tiff.extend_from_slice(&0x010Eu16.to_be_bytes());
        tiff.extend_from_slice(&2u16.to_be_bytes());
        tiff.extend_from_slice(&(text.len() as u32).to_be_bytes());
        tiff.extend_from_slice(&38u32.to_be_bytes());
        // Orientation 6.
        tiff.extend_from_slice(&0x0112u16.to_be_bytes());
        tiff.extend_from_slice(&3u16.to_be_bytes());
        tiff.extend_from_slice(&1u32.to_be_bytes());
        tiff.extend_from_slice(&[0, 6, 0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes());
        tiff.extend_from_slice(text);
        let mut jpeg = jpeg::Jpeg::from_bytes(Bytes::from(out.into_inner())).unwrap();
        jpeg.set_exif(Some(Bytes::from(tiff)));
        jpeg.encoder().bytes()
    }

    #[test]
    fn a_photo_keeps_only_its_orientation_and_shows_turned() {
        let raw = portrait_photo(640, 320);
        assert!(raw.windows(7).any(|w| w == b"52.3676"));
        let got = inspect(raw).unwrap();
        assert!(
            !got.bytes.windows(7).any(|w| w == b"52.3676"),
            "the place is gone"
        );
        let kept = jpeg::Jpeg::from_bytes(got.bytes.clone()).unwrap().exif();
        assert_eq!(
            kept,
            Some(orientation_exif(6)),
            "the orientation alone is kept"
        );
        assert_eq!(orientation_of(&orientation_exif(6)), Some(6));
        assert_eq!(
            (got.meta.width, got.meta.height),
            (Some(320), Some(640)),
            "its size as shown: turned a quarter"
        );
        let thumb = image::load_from_memory(&got.thumbnail.unwrap()).unwrap();
        assert_eq!(
            (thumb.width(), thumb.height()),
            (120, 240),
            "the thumbnail is turned too"
        );
    }

    #[test]
    fn the_type_comes_from_the_bytes() {
        let html = inspect(Bytes::from_static(
            b"<html><script>alert(1)</script></html>",
        ))
        .unwrap();
        assert_eq!(html.meta.content_type, "text/html");
        assert!(!html.meta.inline());
        let text = inspect(Bytes::from_static("héllo, wörld".as_bytes())).unwrap();
        assert_eq!(text.meta.content_type, "text/plain; charset=utf-8");
        let bin = inspect(Bytes::from_static(&[1, 0, 2, 0, 3])).unwrap();
        assert_eq!(bin.meta.content_type, "application/octet-stream");
        let pdf = inspect(Bytes::from_static(b"%PDF-1.7\n...")).unwrap();
        assert_eq!(pdf.meta.content_type, "application/pdf");
        assert!(!pdf.meta.inline());
    }

    #[test]
    fn programs_and_empty_files_are_refused() {
        let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
        elf.resize(64, 0);
        assert!(matches!(
            inspect(Bytes::from(elf)),
            Err(AppError::Unsupported(_))
        ));
        let exe = Bytes::from_static(b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0");
        assert!(matches!(inspect(exe), Err(AppError::Unsupported(_))));
        assert!(matches!(
            inspect(Bytes::new()),
            Err(AppError::Validation { .. })
        ));
    }

    #[test]
    fn an_image_that_is_not_one_is_refused() {
        let fake = Bytes::from_static(b"\xFF\xD8\xFF\xE0garbage");
        assert!(matches!(inspect(fake), Err(AppError::Validation { .. })));
    }

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(clean_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_name(Some("C:\\Users\\me\\cat.jpg")), "cat.jpg");
        assert_eq!(clean_name(Some("a\u{0}b\"c\r\n.txt")), "abc.txt");
        assert_eq!(clean_name(Some("..")), "file");
        assert_eq!(clean_name(None), "file");
        assert!(!valid_key("../x"));
        assert!(!valid_key(&"A".repeat(64)));
    }
}
