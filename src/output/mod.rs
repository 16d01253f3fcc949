//! The outputs: each renders findings as its destination expects and delivers them through the
//! [`Sink`](crate::finding::sink::Sink) seam.
//!
//! - [`sns`]: the SNS topic (email, and SQS, HTTPS or Lambda subscribers), with the message
//!   formats.

pub mod sns;
