//! Message bodies: format=flowed text (RFC 3676) unwrapped and written,
//! XEP-0393 styling turned into HTML, HTML sanitised (ammonia) before it
//! travels as XEP-0481 content and rendered as styled text, and XHTML-IM
//! (XEP-0071) for those who ask for it. One file per topic.

mod flowed;
mod html;
mod styling;
mod xhtml;

pub use flowed::{flow, unflow};
pub use html::{html_to_text, sanitize_html};
pub use styling::styled_to_html;
pub use xhtml::xhtml_im;

#[cfg(test)]
mod tests;
