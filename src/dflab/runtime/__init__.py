"""Runtime services every stage may use, and which use no other stage: progress and messages
(``progress``), memory behaviour of long runs (``memory``), file hashes and atomic writes (``files``),
and the table of published third-party weights with download and sha256 checks (``weights``)."""
