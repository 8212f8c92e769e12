"""Clinical SDTM source family: raw, curated and feature assets of CRO/EDC deliveries."""
