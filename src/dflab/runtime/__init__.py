"""Runtime services every stage may use, and which use no other stage: progress and messages
(``progress``), one-line error messages (``messages``), memory behaviour of long runs (``memory``), file
hashes and atomic writes (``files``), numeric helpers (``numeric``), Dask clusters (``cluster``), and the
table of published third-party weights with download and sha256 checks (``weights``)."""
