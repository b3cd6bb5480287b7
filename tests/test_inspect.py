"""`dflab inspect` and metadata-gb: JPEG quality on images Pillow saved at known qualities, IJG and
non-IJG tables, the double-JPEG test on single vs double compressed images, DCT coefficients against
scipy, EXIF/XMP/thumbnail fields, video facts, C2PA "none", the command, the detector."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.fft import dctn
from sklearn.metrics import roc_auc_score

from dflab.detectors import create, load_detector
from dflab.media.jpeg_forensics import (DOUBLE_JPEG_THRESHOLD, IJG_CHROMINANCE, IJG_LUMINANCE, histogram_periodicity,
                                        ijg_table, quality_estimate, quantised_luma_coefficients)
from dflab.detectors.handcrafted.metadata import FEATURE_NAMES, metadata_vector
from dflab.media.metadata import InspectionError, inspect_file

from .conftest import require_shared
from .test_video import make_video


def natural_image(seed: int, size: int = 128) -> np.ndarray:
    """Smooth random shapes plus mild texture: DCT statistics like a photograph's (a Laplacian-like
    coefficient histogram), unlike white noise."""
    rng = np.random.default_rng(seed)
    field = rng.normal(0, 1, (size // 8, size // 8, 3))
    image = np.asarray(Image.fromarray(((field - field.min()) / np.ptp(field) * 255).astype(np.uint8))
                       .resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int | None, **options) -> bytes:
    """JPEG at an IJG quality, or (quality None) with the tables given as ``qtables`` unscaled."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", **({} if quality is None else {"quality": quality}), **options)
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("quality", [10, 35, 50, 75, 90, 97])
def test_quality_of_pillow_jpegs_is_found_exactly(tmp_path, quality):
    path = write(tmp_path, "q.jpg", jpeg_bytes(natural_image(0, 32), quality))
    jpeg = inspect_file(path)["jpeg"]
    assert jpeg["estimated_quality"] == quality and jpeg["ijg_exact"] and jpeg["fit_error"] == 0
    assert f"quality {quality}" in jpeg["encoder"]


def test_ijg_scaling_formula():
    # libjpeg: quality 50 is the base table, 100 is all ones, below 50 the scale is 5000 / q
    np.testing.assert_array_equal(ijg_table(IJG_LUMINANCE, 50), IJG_LUMINANCE)
    assert (ijg_table(IJG_LUMINANCE, 100) == 1).all()
    assert ijg_table(IJG_LUMINANCE, 25)[0] == (16 * 200 + 50) // 100
    assert ijg_table(IJG_LUMINANCE, 1).max() == 255  # baseline tables are clamped to 8 bits


def test_custom_tables_are_not_called_ijg(tmp_path):
    # An encoder's own table (e.g. a camera's): IJG's quality-80 table with a few entries changed.
    table = ijg_table(IJG_LUMINANCE, 80).copy()
    table[[5, 17, 40]] += 3
    chroma = ijg_table(IJG_CHROMINANCE, 80)
    data = jpeg_bytes(natural_image(1, 32), None, qtables=[table.tolist(), chroma.tolist()])
    jpeg = inspect_file(write(tmp_path, "custom.jpg", data))["jpeg"]
    assert not jpeg["ijg_exact"] and jpeg["fit_error"] > 0
    assert abs(jpeg["estimated_quality"] - 80) <= 3 and "not IJG" in jpeg["encoder"]
    assert quality_estimate(table, chroma) == {k: jpeg[k] for k in ("estimated_quality", "ijg_exact", "fit_error",
                                                                   "encoder")}


def test_coefficients_match_scipy_dct():
    rng = np.random.default_rng(2)
    luma = rng.integers(0, 256, (16, 24)).astype(np.uint8)
    table = rng.integers(1, 30, 64)
    got = quantised_luma_coefficients(luma, table)
    expected = []
    for by in range(2):
        for bx in range(3):
            block = luma[by * 8:(by + 1) * 8, bx * 8:(bx + 1) * 8].astype(float) - 128
            expected.append(np.rint(dctn(block, norm="ortho") / table.reshape(8, 8)))
    np.testing.assert_array_equal(got, np.array(expected))


def test_histogram_periodicity_sees_gaps_not_decay():
    rng = np.random.default_rng(3)
    smooth = rng.laplace(0, 4, 20000).round()
    # every third magnitude missing: what re-quantising with a 3x coarser first step leaves
    gapped = smooth[np.abs(smooth) % 3 == 0]
    assert histogram_periodicity(smooth) < DOUBLE_JPEG_THRESHOLD < histogram_periodicity(gapped)
    assert histogram_periodicity(np.ones(10)) is None  # too few coefficients to say


@pytest.mark.parametrize("seed", [0, 1])
def test_double_compression_is_detected(tmp_path, seed):
    image = natural_image(seed, 256)
    single = inspect_file(write(tmp_path, "single.jpg", jpeg_bytes(image, 90)))["jpeg"]["double_compression"]
    double = inspect_file(write(tmp_path, "double.jpg",
                                jpeg_bytes(decoded(jpeg_bytes(image, 60)), 90)))["jpeg"]["double_compression"]
    assert single["suspected"] is False and double["suspected"] is True
    assert double["score"] > 2 * single["score"]


def tiff_with_thumbnail(make: bytes, thumbnail: bytes) -> bytes:
    """EXIF APP1 payload written by hand (Pillow cannot write IFD1): IFD0 with Make, IFD1 with the
    JPEGInterchangeFormat offset and length, then the thumbnail."""
    assert len(make) <= 4
    entry = lambda tag, kind, count, value: struct.pack("<HHI", tag, kind, count) + value  # noqa: E731
    ifd0 = struct.pack("<H", 1) + entry(271, 2, len(make), make.ljust(4, b"\0")) + struct.pack("<I", 26)
    thumb_offset = 26 + 2 + 2 * 12 + 4
    ifd1 = (struct.pack("<H", 2) + entry(0x201, 4, 1, struct.pack("<I", thumb_offset))
            + entry(0x202, 4, 1, struct.pack("<I", len(thumbnail))) + struct.pack("<I", 0))
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1 + thumbnail


def test_thumbnail_present_and_matching_or_not(tmp_path):
    picture = natural_image(4, 160)
    own = jpeg_bytes(np.asarray(Image.fromarray(picture).resize((40, 40), Image.Resampling.BOX)), 90)
    other = jpeg_bytes(np.asarray(Image.fromarray(natural_image(5, 160)).resize((40, 40))), 90)
    matching = inspect_file(write(tmp_path, "a.jpg", jpeg_bytes(picture, 90, exif=tiff_with_thumbnail(b"Cam", own))))
    assert matching["exif"]["Make"] == "Cam"
    assert matching["thumbnail"]["present"] and matching["thumbnail"]["matches"]
    assert matching["thumbnail"]["psnr_db"] >= 25
    edited = inspect_file(write(tmp_path, "b.jpg", jpeg_bytes(picture, 90, exif=tiff_with_thumbnail(b"Cam", other))))
    assert edited["thumbnail"]["present"] and not edited["thumbnail"]["matches"]
    plain = inspect_file(write(tmp_path, "c.jpg", jpeg_bytes(picture, 90)))
    assert plain["thumbnail"] == {"present": False} and plain["exif"] == {}
    vector = dict(zip(FEATURE_NAMES, metadata_vector(edited)))
    assert vector["has_thumbnail"] == 1 and vector["thumbnail_matches"] == 0 and vector["jpeg_quality"] == 90


def test_exif_and_xmp_fields(tmp_path):
    exif = Image.Exif()
    exif[271], exif[272], exif[305], exif[306] = "Canon", "EOS 5D", "Adobe Photoshop 25.0", "2024:05:01 10:00:00"
    exif.get_ifd(0x8769)[36867] = "2024:04:30 09:00:00"
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmp:CreatorTool="GIMP 2.10" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
           b'xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"><xmp:ModifyDate>2024-05-02</xmp:ModifyDate>'
           b'<stEvt:softwareAgent>Adobe Photoshop 25.0</stEvt:softwareAgent></rdf:Description></rdf:RDF></x:xmpmeta>')
    report = inspect_file(write(tmp_path, "e.jpg", jpeg_bytes(natural_image(6, 32), 85, exif=exif, xmp=xmp)))
    assert report["exif"] == {"Make": "Canon", "Model": "EOS 5D", "Software": "Adobe Photoshop 25.0",
                              "DateTime": "2024:05:01 10:00:00", "DateTimeOriginal": "2024:04:30 09:00:00"}
    assert report["xmp"]["xmp:CreatorTool"] == "GIMP 2.10" and report["xmp"]["xmp:ModifyDate"] == "2024-05-02"
    assert report["xmp"]["history_software"] == ["Adobe Photoshop 25.0"]
    assert report["c2pa"] == {"status": "none"}


def signed_jpeg(source, target) -> None:
    """Sign a JPEG with C2PA content credentials, from a throwaway CA and signer made here."""
    import datetime

    import c2pa
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, issuer, key, issuer_key, ca):
        usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                              encipher_only=False, decipher_only=False)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(usage, critical=True))
        if not ca:
            builder = (builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                      critical=False)
                       .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        return builder.sign(issuer_key, hashes.SHA256())

    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),  # noqa: E731
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dflab test")])
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate(name("test CA"), name("test CA"), ca_key, ca_key, True)
    leaf = certificate(name("test signer"), ca.subject, key, ca_key, False)
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, private, None))
    manifest = {"claim_generator_info": [{"name": "dflab-test", "version": "1"}], "title": "signed.jpg",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [{
                    "action": "c2pa.created",
                    "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}]}}]}
    with open(source, "rb") as src, open(target, "w+b") as dst:
        c2pa.Builder(json.dumps(manifest)).sign(signer, "image/jpeg", src, dst)


def test_c2pa_credentials_valid_and_tampered(tmp_path):
    source = write(tmp_path, "plain.jpg", jpeg_bytes(natural_image(10, 64), 85))
    signed = tmp_path / "signed.jpg"
    signed_jpeg(source, signed)
    credentials = inspect_file(signed)["c2pa"]
    assert credentials["status"] == "valid" and credentials["claim_generator"] == "dflab-test"
    assert credentials["issuer"] == "dflab test"
    assert credentials["validation_failures"] == ["signingCredential.untrusted"]  # our CA is on no trust list
    data = bytearray(signed.read_bytes())
    data[-20] ^= 0xFF  # one changed byte of the picture after signing
    tampered = write(tmp_path, "tampered.jpg", bytes(data))
    credentials = inspect_file(tampered)["c2pa"]
    assert credentials["status"] == "invalid" and "assertion.dataHash.mismatch" in credentials["validation_failures"]
    assert inspect_file(source)["c2pa"] == {"status": "none"}


def test_png_and_video_facts(tmp_path):
    png = tmp_path / "p.png"
    Image.fromarray(natural_image(7, 32)).save(png)
    report = inspect_file(png)
    assert report["format"] == "PNG" and "jpeg" not in report and report["width"] == 32
    vector = dict(zip(FEATURE_NAMES, metadata_vector(report)))
    assert vector["is_png"] == 1 and vector["jpeg_quality"] == -1
    video = inspect_file(make_video(tmp_path / "v.mp4", n=12, rate=12, rotation=90))
    assert video["kind"] == "video" and video["fps"] == pytest.approx(12)
    assert video["rotation"] == 90 and video["frames"] == 12 and (video["width"], video["height"]) == (48, 64)
    assert video["tags"].get("encoder", "").startswith("Lavf")


def test_bad_files_raise_one_line(tmp_path):
    for name, data in (("empty.jpg", b""), ("text.jpg", b"hello"), ("cut.jpg", jpeg_bytes(natural_image(8, 64), 90)[:300])):
        with pytest.raises(InspectionError, match=name) as info:
            inspect_file(write(tmp_path, name, data))
        assert "\n" not in str(info.value)
    with pytest.raises(InspectionError, match="file not found"):
        inspect_file(tmp_path / "missing.png")


def dflab(*args):
    return subprocess.run([sys.executable, "-m", "dflab", *map(str, args)], capture_output=True, text=True,
                          env={**__import__("os").environ, "COLUMNS": "200"})


@pytest.mark.slow
def test_inspect_command_table_json_and_bad_files(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    write(folder, "good.jpg", jpeg_bytes(natural_image(9, 64), 70))
    write(folder, "broken.png", b"not a png")
    table = dflab("inspect", folder / "good.jpg")
    assert table.returncode == 0 and "IJG/libjpeg standard tables at quality 70" in table.stdout
    assert "C2PA" in table.stdout and "none" in table.stdout
    listing = dflab("inspect", folder, "--json")
    assert listing.returncode == 0
    payload = json.loads(listing.stdout)
    assert [f["path"].rsplit("/", 1)[1] for f in payload["files"]] == ["good.jpg"]
    assert len(payload["skipped"]) == 1 and "broken.png" in payload["skipped"][0]
    assert "skipped" in listing.stderr and "broken.png" in listing.stderr
    bad = dflab("inspect", folder / "broken.png")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "broken.png" in bad.stderr


def test_metadata_detector_learns_quality_and_round_trips(tmp_path):
    # Reals saved at quality 95, fakes re-saved at 70 (double compressed): metadata separates them.
    paths, labels = [], []
    for i in range(60):
        image = natural_image(100 + i, 32)
        data = jpeg_bytes(decoded(jpeg_bytes(image, 90)), 70) if i % 2 else jpeg_bytes(image, 95)
        paths.append(str(write(tmp_path, f"{i}.jpg", data)))
        labels.append(i % 2)
    labels = np.array(labels)
    detector = create("metadata-gb").fit((paths[:48], labels[:48]))
    scores = detector.predict_proba(paths[48:])
    assert roc_auc_score(labels[48:], scores) == 1.0
    detector.save(tmp_path / "model")
    np.testing.assert_array_equal(load_detector(tmp_path / "model").predict_proba(paths[48:]), scores)
    bad = detector.predict_proba([str(write(tmp_path, "bad.jpg", b"xx")), paths[48], natural_image(0, 16)],
                                 on_error="nan")
    assert np.isnan(bad[0]) and bad[1] == scores[0] and np.isnan(bad[2])
    with pytest.raises(InspectionError, match="bad.jpg"):
        detector.predict_proba([str(tmp_path / "bad.jpg")])


def test_real_faces():
    task1 = require_shared("datasets", "Task_1", "development", "real")
    task23 = require_shared("datasets", "Task_2_3", "evaluation", "fake")
    png = inspect_file(sorted(sorted(task1.iterdir())[0].iterdir())[0])
    assert png["format"] == "PNG" and png["width"] == 256 and png["exif"] == {}
    jpeg = inspect_file(sorted(task23.iterdir())[0])
    assert jpeg["jpeg"]["ijg_exact"] and jpeg["jpeg"]["estimated_quality"] == 75
    assert jpeg["jpeg"]["double_compression"]["suspected"] is False
