//! What makes an upload a poster: a clean image of one of the accepted types,
//! read and decoded once, under limits, before anything is stored.
//!
//! "Clean" means every byte belongs to the image: the type told by the first
//! bytes is the type the decoder reads, the header's size is within bounds,
//! the container ends exactly where the file ends (nothing after PNG's `IEND`,
//! GIF's trailer, JPEG's end-of-image marker or WebP's RIFF length, but zero
//! padding), and the picture decodes whole within a memory budget. So a file
//! that is also an HTML page or a script appended to an image (a polyglot), a
//! cut-off upload, and a small file that would unpack into gigabytes (a
//! decompression bomb) are all refused, each with a sentence.
//!
//! Slow for a big picture: run it off the async threads (`spawn_blocking`).

use std::io::Cursor;

use image::{ImageError, ImageFormat, ImageReader, Limits};

/// The longest side a poster may have, in pixels: WeChat shows posters a few
/// hundred pixels wide, and a print-size 8,000 is already generous.
pub const MAX_SIDE: u32 = 8000;

/// What decoding may allocate. An 8-bit RGBA 4000×4000 (a phone photo) takes
/// 64 MiB; an 8000×8000 in colour would take 192 MiB or more and is refused.
pub const MAX_DECODE_BYTES: u64 = 128 * 1024 * 1024;

/// Why an upload is not taken as a poster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not PNG, JPEG, GIF or WebP by its first bytes.
    NotAnImage,
    /// The header declares a side longer than [`MAX_SIDE`].
    TooLarge { width: u32, height: u32 },
    /// Decoding would take more memory than [`MAX_DECODE_BYTES`].
    TooMuchMemory,
    /// Cut off, or damaged: the image does not read to its end.
    Damaged,
    /// Bytes other than zeros after the image's end (another file riding along).
    TrailingData,
}

impl Refusal {
    /// The sentence the admin reads.
    pub fn sentence(&self) -> String {
        match self {
            Refusal::NotAnImage => "只能上传 PNG、JPEG、WebP 或 GIF 图片。".into(),
            Refusal::TooLarge { width, height } => {
                format!("图片太大：{width}×{height} 像素，每边最多 {MAX_SIDE} 像素。请缩小后再上传。")
            }
            Refusal::TooMuchMemory => "图片解码需要的内存太多（像素太多），请缩小后再上传。".into(),
            Refusal::Damaged => "图片不完整或已损坏（可能没有上传完），请重新导出后再上传。".into(),
            Refusal::TrailingData => {
                "图片结尾之后还夹带了别的数据（例如拼接的文件或动态照片），请用看图软件另存为普通图片后再上传。".into()
            }
        }
    }
}

/// The poster's content type, once `bytes` is a clean image of it.
pub fn check(bytes: &[u8]) -> Result<&'static str, Refusal> {
    let (content_type, format) = sniff(bytes).ok_or(Refusal::NotAnImage)?;
    // The decoder's own guess must be the same type: one file, one reading.
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|_| Refusal::Damaged)?;
    if reader.format() != Some(format) {
        return Err(Refusal::NotAnImage);
    }
    // The header alone first: a bomb is refused before a byte of it is unpacked.
    reader.limits(limits(None));
    let (width, height) = reader.into_dimensions().map_err(refusal)?;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Refusal::TooLarge { width, height });
    }
    let end = container_end(format, bytes).ok_or(Refusal::Damaged)?;
    if bytes[end..].iter().any(|&b| b != 0) {
        return Err(Refusal::TrailingData);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits(Some(MAX_SIDE)));
    reader.decode().map_err(refusal)?;
    Ok(content_type)
}

fn refusal(e: ImageError) -> Refusal {
    match e {
        ImageError::Limits(_) => Refusal::TooMuchMemory,
        _ => Refusal::Damaged,
    }
}

/// The budget for each step: the pixels' bound only once the header has been
/// read (so the refusal can say how large it claims to be).
fn limits(sides: Option<u32>) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = sides;
    limits.max_image_height = sides;
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// The accepted types, told by their first bytes: the content type it is
/// stored and served as, and the format the decoder must read it as.
fn sniff(bytes: &[u8]) -> Option<(&'static str, ImageFormat)> {
    let content_type = super::images::sniff(bytes)?;
    Some((content_type, ImageFormat::from_mime_type(content_type)?))
}

/// Where the image's container says it ends; `None` when it does not get
/// there (cut off, or not built as its format is).
fn container_end(format: ImageFormat, bytes: &[u8]) -> Option<usize> {
    match format {
        ImageFormat::Png => png_end(bytes),
        ImageFormat::Gif => gif_end(bytes),
        ImageFormat::Jpeg => jpeg_end(bytes),
        ImageFormat::WebP => webp_end(bytes),
        _ => None,
    }
}

fn be32(bytes: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_be_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?) as usize)
}

fn be16(bytes: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?) as usize)
}

/// PNG: chunks (length, type, data, CRC) after the signature, up to `IEND`.
fn png_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 8;
    loop {
        let length = be32(bytes, at)?;
        let kind = bytes.get(at + 4..at + 8)?;
        let end = at.checked_add(12)?.checked_add(length)?;
        if end > bytes.len() {
            return None;
        }
        at = end;
        if kind == b"IEND" {
            return Some(at);
        }
    }
}

/// GIF: header, screen descriptor and colour table, then blocks (extensions,
/// images with their data sub-blocks) up to the trailer `;`.
fn gif_end(bytes: &[u8]) -> Option<usize> {
    let table = |packed: u8| if packed & 0x80 != 0 { 3usize << ((packed & 0x07) + 1) } else { 0 };
    // Sub-blocks: a length byte and that many bytes, until a zero length.
    let sub_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let n = *bytes.get(at)? as usize;
            at += 1 + n;
            if n == 0 {
                return Some(at);
            }
        }
    };
    let mut at = 13 + table(*bytes.get(10)?);
    loop {
        match *bytes.get(at)? {
            0x21 => at = sub_blocks(at + 2)?,
            0x2C => {
                let packed = *bytes.get(at + 9)?;
                // Descriptor, local colour table, LZW code size, then the data.
                at = sub_blocks(at + 10 + table(packed) + 1)?;
            }
            0x3B => return Some(at + 1).filter(|&end| end <= bytes.len()),
            _ => return None,
        }
    }
}

/// JPEG: marker segments; after each start-of-scan, entropy-coded data up to
/// the next marker (`FF 00` is a stuffed byte, `FF D0`–`D7` restarts), until
/// the end-of-image marker `FF D9`.
fn jpeg_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        // Fill bytes before a marker.
        while *bytes.get(at)? == 0xFF {
            at += 1;
        }
        let marker = *bytes.get(at)?;
        at += 1;
        match marker {
            0xD9 => return Some(at),
            0x01 | 0xD0..=0xD7 => {}
            _ => {
                let length = be16(bytes, at)?;
                if length < 2 {
                    return None;
                }
                at = at.checked_add(length)?;
                if marker == 0xDA {
                    at = entropy_coded_end(bytes, at)?;
                }
            }
        }
    }
}

/// Where a scan's entropy-coded data stops: at the next real marker.
fn entropy_coded_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        at += bytes.get(at..)?.iter().position(|&b| b == 0xFF)?;
        match *bytes.get(at + 1)? {
            0x00 | 0xD0..=0xD7 => at += 2,
            _ => return Some(at),
        }
    }
}

/// WebP: a RIFF file, as long as its header says (chunks padded to even sizes).
fn webp_end(bytes: &[u8]) -> Option<usize> {
    let size = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
    Some(8usize.checked_add(size)?).filter(|&end| end <= bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1×1 PNG.
    const PNG: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00,
        0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D,
        0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];

    /// A 1×1 GIF (the smallest well-formed one).
    const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

    #[test]
    fn a_clean_image_passes_and_a_tail_does_not() {
        assert_eq!(check(PNG), Ok("image/png"));
        assert_eq!(check(GIF), Ok("image/gif"));
        let mut padded = PNG.to_vec();
        padded.extend([0; 16]);
        assert_eq!(check(&padded), Ok("image/png"), "zero padding is no payload");
        for image in [PNG, GIF] {
            let mut polyglot = image.to_vec();
            polyglot.extend_from_slice(b"<script>alert(1)</script>");
            assert_eq!(check(&polyglot), Err(Refusal::TrailingData));
            assert_eq!(check(&image[..image.len() - 3]), Err(Refusal::Damaged));
        }
        assert_eq!(check(b"<html>"), Err(Refusal::NotAnImage));
    }

    #[test]
    fn the_classic_gif_script_polyglot_declares_an_impossible_width() {
        // `GIF89a/*` … `*/=alert(1);`: the comment's opening `/*` is the width, 10,799 px.
        let mut polyglot = GIF.to_vec();
        polyglot[6..8].copy_from_slice(b"/*");
        polyglot.extend_from_slice(b"*/=alert(1);");
        assert_eq!(check(&polyglot), Err(Refusal::TooLarge { width: 10799, height: 1 }));
    }

    #[test]
    fn jpeg_segments_are_walked_to_the_end_of_image() {
        // SOI, a comment, a start-of-scan with stuffed and restart bytes, EOI.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x04, b'h', b'i', 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0,
            0x56, 0xFF, 0xD9,
        ];
        assert_eq!(jpeg_end(&jpeg), Some(jpeg.len()));
        assert_eq!(jpeg_end(&jpeg[..jpeg.len() - 2]), None);
    }
}
