//! The header chain: validation, forks and persistence (pure; `store` does the file I/O).
