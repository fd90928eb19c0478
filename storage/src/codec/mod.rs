//! Column codecs: timestamps, integers, floats, text and booleans.
