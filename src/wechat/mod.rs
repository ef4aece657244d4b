//! The WeChat Official Account wire protocol: request signatures, safe-mode
//! AES encryption, parsing the XML WeChat posts, and rendering passive replies.
//!
//! This module knows nothing about tickets: it turns bytes on the wire into
//! typed values and back, so the application logic never handles raw XML or
//! ciphertext and this layer can be tested against WeChat's published vectors
//! on its own.

pub mod api;
pub mod crypto;
pub mod delivery;
pub mod jssdk;
pub mod menu;
pub mod message;
pub mod reply;
pub mod signature;
/// The API client's access token, kept in PostgreSQL for every instance (the
/// one part of this module that touches the database).
pub mod token_store;

/// rustls needs one process-wide crypto provider; ring builds without a C
/// toolchain dance. Here, not in the crate root, so that this module needs
/// nothing outside itself (the rest of the crate calls it too).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Everything that can go wrong while reading what WeChat sent us.
///
/// Every variant is the fault of the request (or of the configured key), so
/// the HTTP layer can answer them all with 400/403 without further thought;
/// the variants are distinct so logs say what was actually wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatError {
    /// `signature` or `msg_signature` does not match the request.
    #[error("signature mismatch")]
    BadSignature,
    /// The configured EncodingAESKey is not 43 base64 characters.
    #[error("EncodingAESKey must be 43 base64 characters")]
    BadAesKey,
    /// The `Encrypt` element is not valid base64.
    #[error("Encrypt is not valid base64")]
    BadBase64,
    /// The ciphertext has the wrong length or decrypts to bad padding.
    #[error("bad ciphertext: {0}")]
    BadCiphertext(&'static str),
    /// The plaintext's length field points past the end of the message.
    #[error("message length field overruns the plaintext")]
    LengthOverrun,
    /// The message was encrypted for another Official Account.
    #[error("message is addressed to another appid")]
    WrongAppId,
    /// The decrypted message is not UTF-8, so it cannot be XML we accept.
    #[error("decrypted message is not UTF-8")]
    NotUtf8,
    /// The body is not well-formed XML of the shape WeChat sends.
    #[error("malformed XML: {0}")]
    MalformedXml(String),
    /// The body carries a DOCTYPE. WeChat never sends one, and a DTD is how
    /// entity-expansion ("billion laughs") attacks are delivered, so any DTD
    /// is refused before anything else is read.
    #[error("XML with a DOCTYPE is refused")]
    DoctypeRefused,
    /// A field every WeChat message carries is absent.
    #[error("missing <{0}> element")]
    MissingField(&'static str),
}
