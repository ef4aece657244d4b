//! Safe-mode ("安全模式") message encryption.
//!
//! `Encrypt = base64(AES-256-CBC(key, iv = key[..16],
//!     random[16] ‖ u32be(len(xml)) ‖ xml ‖ appid ‖ PKCS#7 padding to 32))`.
//!
//! The padding is PKCS#7 over 32-byte blocks although AES blocks are 16
//! bytes, so pad values run 1..=32; a stock 16-byte unpadder would reject
//! half of all messages. Decryption therefore runs without a padding mode and
//! the padding is checked and stripped here.

use std::fmt;

use aes::Aes256;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};

use super::WechatError;
use super::reply::{cdata, escape};
use super::signature::sign;

/// WeChat's padding block, twice AES's.
const PAD_BLOCK: usize = 32;
/// Random prefix plus the big-endian length field.
const HEADER: usize = 20;

/// The EncodingAESKey's 43rd character carries two bits beyond the 256 key
/// bits, and WeChat's console leaves them non-zero in most keys. A strict
/// decoder refuses those keys, so the key is decoded with an engine that
/// ignores trailing bits, as the decoders in WeChat's sample code do.
const LENIENT: GeneralPurpose =
    GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));

/// The AES key and appid of one Official Account.
#[derive(Clone)]
pub struct Cipher {
    key: [u8; 32],
    appid: String,
}

/// Hand-written so the key can never end up in a log line.
impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher").field("key", &"<redacted>").field("appid", &self.appid).finish()
    }
}

impl Cipher {
    /// `encoding_aes_key` is the 43-character EncodingAESKey from the WeChat
    /// console; `appid` is the account's AppID, which every message carries.
    pub fn new(encoding_aes_key: &str, appid: &str) -> Result<Cipher, WechatError> {
        if encoding_aes_key.len() != 43 {
            return Err(WechatError::BadAesKey);
        }
        let key = LENIENT
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| WechatError::BadAesKey)?
            .try_into()
            .map_err(|_| WechatError::BadAesKey)?;
        Ok(Cipher { key, appid: appid.to_owned() })
    }

    /// Decrypts an `Encrypt` element and returns the XML inside.
    ///
    /// Check `msg_signature` first: it authenticates the ciphertext, so only
    /// WeChat's own ciphertexts ever reach the padding check (no padding
    /// oracle). Any input yields an error rather than a panic.
    pub fn decrypt(&self, encrypt_b64: &str) -> Result<String, WechatError> {
        let plain = self.open(encrypt_b64)?;
        let body = unpad(&plain)?;
        let (header, rest) = body.split_first_chunk::<HEADER>().ok_or(WechatError::BadCiphertext("too short"))?;
        let [.., a, b, c, d] = *header;
        let xml_len = u32::from_be_bytes([a, b, c, d]) as usize;
        let (xml, appid) = rest.split_at_checked(xml_len).ok_or(WechatError::LengthOverrun)?;
        if appid != self.appid.as_bytes() {
            return Err(WechatError::WrongAppId);
        }
        String::from_utf8(xml.to_vec()).map_err(|_| WechatError::NotUtf8)
    }

    /// Encrypts a reply with a fresh random prefix.
    pub fn encrypt(&self, xml: &str) -> String {
        self.encrypt_with_random(xml, &rand::random())
    }

    /// Encrypts with a caller-chosen prefix: deterministic, for known-answer
    /// tests. Production code should call [`Cipher::encrypt`].
    pub fn encrypt_with_random(&self, xml: &str, random: &[u8; 16]) -> String {
        // Replies are built by this application and are a few KiB at most.
        let xml_len = u32::try_from(xml.len()).expect("reply XML shorter than 4 GiB");
        let mut plain = Vec::with_capacity(HEADER + xml.len() + self.appid.len() + PAD_BLOCK);
        plain.extend_from_slice(random);
        plain.extend_from_slice(&xml_len.to_be_bytes());
        plain.extend_from_slice(xml.as_bytes());
        plain.extend_from_slice(self.appid.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        // `pad` is in 1..=32, so the cast is lossless.
        plain.resize(plain.len() + pad, pad as u8);
        self.seal(plain)
    }

    /// AES-CBC over an already block-aligned plaintext, then base64.
    fn seal(&self, mut plain: Vec<u8>) -> String {
        let len = plain.len();
        cbc::Encryptor::<Aes256>::new(&self.key.into(), &self.iv().into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, len)
            .expect("plaintext is padded to a multiple of the block size");
        STANDARD.encode(plain)
    }

    /// base64 and AES-CBC, leaving the padding in place.
    fn open(&self, encrypt_b64: &str) -> Result<Vec<u8>, WechatError> {
        let mut buf = STANDARD.decode(encrypt_b64).map_err(|_| WechatError::BadBase64)?;
        if buf.is_empty() || buf.len() % PAD_BLOCK != 0 {
            return Err(WechatError::BadCiphertext("length is not a positive multiple of 32 bytes"));
        }
        cbc::Decryptor::<Aes256>::new(&self.key.into(), &self.iv().into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| WechatError::BadCiphertext("not block aligned"))?;
        Ok(buf)
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0; 16];
        iv.copy_from_slice(&self.key[..16]);
        iv
    }
}

/// Strips PKCS#7 padding over 32-byte blocks, checking every pad byte.
fn unpad(plain: &[u8]) -> Result<&[u8], WechatError> {
    let bad = WechatError::BadCiphertext("bad padding");
    let pad = usize::from(*plain.last().ok_or(bad.clone())?);
    if !(1..=PAD_BLOCK).contains(&pad) || pad > plain.len() {
        return Err(bad);
    }
    let (body, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|&b| usize::from(b) != pad) {
        return Err(bad);
    }
    Ok(body)
}

/// The safe-mode reply body: `xml` encrypted and signed, with `timestamp` and
/// `nonce` echoed from the request.
///
/// `timestamp` and `nonce` come from the query string, i.e. from whoever
/// sent the request, so they are escaped / CDATA-wrapped rather than pasted in.
pub fn reply_envelope(cipher: &Cipher, token: &str, xml: &str, timestamp: &str, nonce: &str) -> String {
    let encrypt = cipher.encrypt(xml);
    let signature = sign(&[token, timestamp, nonce, &encrypt]);
    envelope(&encrypt, &signature, timestamp, nonce)
}

fn envelope(encrypt: &str, signature: &str, timestamp: &str, nonce: &str) -> String {
    format!(
        "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature>\
         <TimeStamp>{}</TimeStamp><Nonce>{}</Nonce></xml>",
        cdata(encrypt),
        cdata(signature),
        escape(timestamp),
        cdata(nonce),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::message::{self, MessageKind};
    use crate::wechat::signature::verify_msg;
    use serde::Deserialize;
    use std::collections::BTreeSet;

    const TOKEN: &str = "123456";
    const AES_KEY: &str = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
    const APPID: &str = "wx49f0ab532d5d035a";
    const TIMESTAMP: &str = "1411525903";
    const NONCE: &str = "461056294";

    const DECRYPT_SIGNATURE: &str = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d";
    const DECRYPT_ENCRYPT: &str = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";

    const ENCRYPT_XML: &str = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
    const ENCRYPT_EXPECTED: &str = "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3";
    const ENCRYPT_SIGNATURE: &str = "407518b7649e86ef23978113f92d27afa9296533";

    fn cipher() -> Cipher {
        Cipher::new(AES_KEY, APPID).expect("vector key is valid")
    }

    /// Re-encodes the vector's ciphertext after `edit` on its bytes.
    fn tampered(edit: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut bytes = STANDARD.decode(DECRYPT_ENCRYPT).unwrap();
        edit(&mut bytes);
        STANDARD.encode(bytes)
    }

    /// Encrypts a hand-built, already aligned plaintext (for bad paddings).
    fn seal_raw(plain: Vec<u8>) -> String {
        assert_eq!(plain.len() % PAD_BLOCK, 0);
        cipher().seal(plain)
    }

    #[test]
    fn key_derivation_matches_vector() {
        assert_eq!(hex::encode(cipher().key), "916c4f115d94103cb15a998f74a0b71787603c398ebdf297d471a71140d2d5a4");
    }

    #[test]
    fn keys_with_nonzero_trailing_bits_are_accepted() {
        // Trap 1: the vector key itself ends in 'R' (0b010001), whose two low
        // bits are unused and non-zero; a strict decoder refuses it.
        assert!(STANDARD.decode(format!("{AES_KEY}=")).is_err());
        assert!(Cipher::new(AES_KEY, APPID).is_ok());
        let other = format!("{}B", "A".repeat(42));
        assert!(STANDARD.decode(format!("{other}=")).is_err());
        assert_eq!(Cipher::new(&other, APPID).unwrap().key, [0; 32]);
    }

    #[test]
    fn malformed_keys_are_refused() {
        for key in [
            "",
            &AES_KEY[..42],
            &format!("{AES_KEY}A"),
            &format!("{AES_KEY}="),
            &format!("{}*", &AES_KEY[..42]),
            &format!("{}=", &AES_KEY[..42]),
            &format!("{}é", &AES_KEY[..41]),
        ] {
            assert_eq!(Cipher::new(key, APPID).unwrap_err(), WechatError::BadAesKey, "{key:?}");
        }
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let shown = format!("{:?}", cipher());
        assert!(shown.contains("redacted") && shown.contains(APPID));
        assert!(!shown.contains("145"), "{shown}"); // 0x91 = 145, first key byte
    }

    #[test]
    fn decrypt_vector() {
        assert!(verify_msg(TOKEN, TIMESTAMP, NONCE, DECRYPT_ENCRYPT, DECRYPT_SIGNATURE));
        let c = cipher();
        let plain = c.open(DECRYPT_ENCRYPT).unwrap();
        // The random prefix happens to be ASCII hex digits.
        assert_eq!(&plain[..16], b"ec90b1530358d4d3");
        assert_eq!(plain.last(), Some(&1));

        let xml = c.decrypt(DECRYPT_ENCRYPT).unwrap();
        assert_eq!(xml.len(), 281);
        let msg = message::parse(&xml).unwrap();
        assert_eq!(msg.from_user, "messense");
        assert_eq!(msg.msg_id.as_deref(), Some("4363689963896700987"));
        assert_eq!(msg.kind, MessageKind::Text { content: "test".into() });
    }

    #[test]
    fn encrypt_vector() {
        let encrypt = cipher().encrypt_with_random(ENCRYPT_XML, b"1234567890123456");
        assert_eq!(encrypt, ENCRYPT_EXPECTED);
        assert_eq!(sign(&[TOKEN, TIMESTAMP, NONCE, &encrypt]), ENCRYPT_SIGNATURE);
        assert_eq!(cipher().decrypt(&encrypt).unwrap(), ENCRYPT_XML);
    }

    #[test]
    fn envelope_is_rendered_exactly() {
        assert_eq!(
            envelope(ENCRYPT_EXPECTED, ENCRYPT_SIGNATURE, TIMESTAMP, NONCE),
            format!(
                "<xml><Encrypt><![CDATA[{ENCRYPT_EXPECTED}]]></Encrypt>\
                 <MsgSignature><![CDATA[{ENCRYPT_SIGNATURE}]]></MsgSignature>\
                 <TimeStamp>{TIMESTAMP}</TimeStamp><Nonce><![CDATA[{NONCE}]]></Nonce></xml>"
            )
        );
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct EnvelopeBack {
        encrypt: String,
        msg_signature: String,
        time_stamp: String,
        nonce: String,
    }

    #[test]
    fn reply_envelope_round_trips_even_with_hostile_query_values() {
        let c = cipher();
        let xml = "<xml><Content><![CDATA[你好]]></Content></xml>";
        for (timestamp, nonce) in [(TIMESTAMP, NONCE), ("1<2&3>", "]]><Encrypt>x</Encrypt><![CDATA[")] {
            let body = reply_envelope(&c, TOKEN, xml, timestamp, nonce);
            let back: EnvelopeBack = quick_xml::de::from_str(&body).expect("envelope parses");
            assert_eq!(back.time_stamp, timestamp);
            assert_eq!(back.nonce, nonce);
            assert!(verify_msg(TOKEN, &back.time_stamp, &back.nonce, &back.encrypt, &back.msg_signature));
            assert_eq!(c.decrypt(&back.encrypt).unwrap(), xml);
        }
    }

    #[test]
    fn random_prefix_differs_between_encryptions() {
        let c = cipher();
        let (a, b) = (c.encrypt("<xml/>"), c.encrypt("<xml/>"));
        assert_ne!(a, b);
        assert_eq!(c.decrypt(&a).unwrap(), c.decrypt(&b).unwrap());
    }

    #[test]
    fn every_pad_length_round_trips() {
        // Plaintext is 16 + 4 + len(xml) + 18 bytes, so 32 consecutive xml
        // lengths produce every pad value 1..=32 exactly once.
        let c = cipher();
        let mut seen = BTreeSet::new();
        for n in 0..PAD_BLOCK {
            let xml = "x".repeat(n);
            let encrypt = c.encrypt(&xml);
            let plain = c.open(&encrypt).unwrap();
            seen.insert(*plain.last().unwrap());
            assert_eq!(c.decrypt(&encrypt).unwrap(), xml);
        }
        assert_eq!(seen, (1..=32).collect());
    }

    #[test]
    fn wrong_appid_is_refused() {
        let err = WechatError::WrongAppId;
        let other = Cipher::new(AES_KEY, "wx0000000000000000").unwrap();
        assert_eq!(other.decrypt(DECRYPT_ENCRYPT), Err(err.clone()));
        // A prefix or extension of our appid is not our appid either.
        let prefix = Cipher::new(AES_KEY, &APPID[..APPID.len() - 1]).unwrap();
        assert_eq!(prefix.decrypt(DECRYPT_ENCRYPT), Err(err.clone()));
        let longer = Cipher::new(AES_KEY, &format!("{APPID}x")).unwrap();
        assert_eq!(longer.decrypt(DECRYPT_ENCRYPT), Err(err));
    }

    #[test]
    fn wrong_msg_signature_is_refused() {
        assert!(!verify_msg(TOKEN, TIMESTAMP, NONCE, DECRYPT_ENCRYPT, "74d92dfeb87ba7c714f89d98870ae5eb62dff26e"));
        let other = tampered(|b| b[0] ^= 1);
        assert!(!verify_msg(TOKEN, TIMESTAMP, NONCE, &other, DECRYPT_SIGNATURE));
    }

    #[test]
    fn truncated_ciphertexts_are_refused() {
        let c = cipher();
        let cut16 = tampered(|b| b.truncate(b.len() - 16));
        assert!(matches!(c.decrypt(&cut16), Err(WechatError::BadCiphertext(_))));
        let cut32 = tampered(|b| b.truncate(b.len() - 32));
        assert!(c.decrypt(&cut32).is_err());
        let cut_char = &DECRYPT_ENCRYPT[..DECRYPT_ENCRYPT.len() - 1];
        assert_eq!(c.decrypt(cut_char), Err(WechatError::BadBase64));
        assert!(matches!(c.decrypt(""), Err(WechatError::BadCiphertext(_))));
    }

    #[test]
    fn bad_base64_is_refused() {
        let c = cipher();
        for input in ["not base64!", "====", "abc", " RgqE", "Rgq\u{e9}"] {
            assert_eq!(c.decrypt(input), Err(WechatError::BadBase64), "{input:?}");
        }
    }

    #[test]
    fn bad_pad_bytes_are_refused() {
        let c = cipher();
        let mut header = vec![0u8; 16];
        header.extend_from_slice(&4u32.to_be_bytes());
        header.extend_from_slice(b"<a/>");
        header.extend_from_slice(APPID.as_bytes());
        let fill = |last: u8, other: u8| {
            let mut plain = header.clone();
            plain.resize(64, other);
            plain[63] = last;
            seal_raw(plain)
        };
        // 42 plaintext bytes + 22 padding bytes: valid only as 22 × 22.
        assert_eq!(c.decrypt(&fill(22, 22)).unwrap(), "<a/>");
        for (last, other) in [(0, 0), (33, 33), (22, 21), (255, 255)] {
            assert!(matches!(c.decrypt(&fill(last, other)), Err(WechatError::BadCiphertext(_))), "pad {last}/{other}");
        }
    }

    #[test]
    fn overrunning_length_and_bad_utf8_are_refused() {
        let c = cipher();
        let build = |len: u32, xml: &[u8]| {
            let mut plain = vec![0u8; 16];
            plain.extend_from_slice(&len.to_be_bytes());
            plain.extend_from_slice(xml);
            plain.extend_from_slice(APPID.as_bytes());
            let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
            plain.resize(plain.len() + pad, pad as u8);
            seal_raw(plain)
        };
        assert_eq!(c.decrypt(&build(4, b"<a/>")).unwrap(), "<a/>");
        assert_eq!(c.decrypt(&build(200, b"<a/>")), Err(WechatError::LengthOverrun));
        assert_eq!(c.decrypt(&build(u32::MAX, b"<a/>")), Err(WechatError::LengthOverrun));
        // Length too short: the rest of the xml is read as the appid.
        assert_eq!(c.decrypt(&build(2, b"<a/>")), Err(WechatError::WrongAppId));
        assert_eq!(c.decrypt(&build(2, b"\xff\xfe")), Err(WechatError::NotUtf8));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let c = cipher();
        for i in 0..3000usize {
            let len = (i % 7) * 16 + (i % 3);
            let bytes: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            let _ = c.decrypt(&STANDARD.encode(&bytes));
            let _ = c.decrypt(&String::from_utf8_lossy(&bytes));
        }
    }
}
