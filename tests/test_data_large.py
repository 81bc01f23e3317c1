"""Tests for the 3-channel datasets: folders, LSUN archives, CelebA/LSUN under TFDS's mock,
the prepared shard format, streaming, and their error messages.

All fast: synthetic images the tests write, a 64 KiB LMDB written by the
reference LMDB (py-lmdb 3.0.0 / LMDB 0.9.36, embedded below), and
`tfds.testing.mock_data`.  No network, no TensorFlow (except where TFDS's mock
imports it).
"""

import base64
import gc
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import igan_jax.data as data
from igan_jax.data import (DatasetError, dataset_size, fits_in_memory, image_shape,
                           load_attributes, load_images, num_classes, stream_batches)
from igan_jax.data import core, datasets, imageproc, lsun, prepared, tfds_prepare
from igan_jax.data import stream as stream_lib

REPO = Path(__file__).resolve().parents[1]

# An LMDB data.mdb (zlib, base64) written by py-lmdb 3.0.0 (LMDB 0.9.36): 42 entries under
# 40-byte sha1-hex keys (like LSUN's): 40 small JPEGs of sizes (8 + 5i % 17) x (8 + 3i % 13),
# one 64x48 JPEG of 2792 bytes (stored in overflow pages) under sha1("big"), and 28 bytes that
# are not an image under sha1("corrupt").  Depth 2: one branch page over 12 leaf pages.
# LMDB_DIGEST: sha256 over key + b"\0" + value + b"\0" of every entry in cursor order.
LMDB_DIGEST = "618ff94fb9ae369d8c26ea7a9a13668dbcb23d11f39857c4ec227e5aa8b019ad"
LMDB_ENTRIES = 42
CORRUPT_KEY = hashlib.sha1(b"corrupt").hexdigest()
LMDB_B64 = (
    "eNrtnQlYFNeWx7uBpqHZBAFBQVRcEJVU3drVoDGCiksExQ23WhURxA0Vd6NGXCMCispLXBBFCIqAcUPcEXeMSyPiAhiM"
    "AVFxQU16qg0dzcyb+cz7JjOvO/f/fd1ddBVN3eLX555z77mnFAqDrN49lxU8zlcqPlT3314aGY74n6VrkOIjZTheqYCC"
    "goKCgoKCgoKCgoKCgvqrpPxL43+z3z/f9j/9Pd+GV4uGV4f/cj5QUFBQUFBQUFBQUFBQUFD/WzL7YMtNYa/ys4vVFKnt"
    "VT4qeG2g/lVteYeVjwIBDE9QDC/RIknwAiYCAhVJmgE8xYoEygICQSSB5HQ3dXcVjYIC+wQqlEr9IJD8pLul+FxhZWmp"
    "tlRZqdVqa2srja2zna2Nja27U2MHZ8+mXs09m3p4tGjt165Fq47eHh4+VPuOCIrjuFc75lMadPXDcKD/EKW1tbWtja2b"
    "nZ0baOnREvxp6QoUjlYKZ4WrubKVwsxRae6o1J1UeMnnqVK+k6HZSjNzC5Wl2spaYyMfkNtIYaY0NzezMFepLCzkvXPl"
    "/QoLR5VTS/Qzy8bBrLrVZGewcO0WK+8ee4+5hFypbY1xUxZZa1ybuLk3bdO2nU97X5wgKZrp/HnPgMBevfsEDRocOmTo"
    "sOEjeEGUxo0PnzB12vSYGTNnxX65eMnSr5bFLY9fl5CYtH5D8sat27an7kjbuSs9e19Obt7+7w8cPH7i5KnTZwrPFhVf"
    "/eHa9Rs3tSX37pdXVD74serhT0+ePqt7/uLlq/rX+nYpFeZKg/5puxzldplZWJhbqPXtUprN0B/gaKFqiVo6fRasZic3"
    "bgUWWjn3WLtl7zFrbyyk1oWbckXj2hq/1+aJvmnvWvZxDVv0L7Xs94a9b1eJwtZcKf/zzB0V3RQng/YkjvI9PjQ5qc4/"
    "X1zyMMCmePkb3zFmzAoDt5Io8pzAcjTNEjzNUwDgPCIhEopTAAM4SRIiyXK4MXBrp3CB3JoGt/mJom92aELW+nOxXpvP"
    "p8QG96jbmp/vpWEu6bSKBQZ2RRRFeZpECREhcILleYqnJE5AGRSXAE/iHCUStIgaB7sOkF3TYPfY6ow2Q+XHrAOTPq+R"
    "5uu0iw28YhwtyGdG4jiGIyQFKI7kWJzFeZYgeZoRaYCJPEYYB69OkFfT4PW7Blvr0KmKBSN8tuYnFOq00K+FzBqjX6v9"
    "RyIrI0x1qprWb88Rn60N78peg/kf4n9fVU+7JE2J2lfVEcb/UH+BVjZYUIHCGZSQSJRFKELCAEsKBMsCCsEBSgOOxghG"
    "dltJ0hgsqI3CDVpQ07CgZxss6DrZgi4VN1Rt7dyhulanUF7odGl+A7kioFCSoxkUCATKcJhIsxSCYLIXSxIIyREUhyA4"
    "itHGQG4jhTUk1zTIPZzYJjCxzZzVTe5265b0o9yzQ0sLeTVOS6vTzjOwCxCU5jGKE1GMEgHGogIt4wwEmqERDCVJUZQI"
    "nJWMg10NZNc02B28K9151+4H0fOVd89N1WkNswY8R+AcQRMUzmOCKJIiYBFeIDGWoRCJI1FAEigiUohxjArYQFpNg9ar"
    "QRum7QzZ4dmhInqMsn7xMnnTZ+vKJgVO3WQvweL3yEwpE1xl98qht/1NeysH2mG8w0x7N/sNDoUOVXY77WHkCgUFBQUF"
    "BQUFBQUFZRz6LYDTz17QFKABIXAUQYuEyEsYJjAMAhiEEwSURhkgcizC2TUcTwsShfEkiVKMHKwyIoJTgGUFlKRxQhAx"
    "kSYokiBY3rbheJREJYbiUQahMZQi5Z0AESmCxFiCR4B+vEKSUIEANobPBxxJ8xhAEFSkKIYHIuAxhqUoieA5lmc5nBcB"
    "R3Eaw/nzCM0hGOBogOGAoCUUcASQeASjBZ5CgMCjFIFKrHXD8YDCeV4gKIIlaJKRG8ZRCEYKAotzrPxXMFTA5YaQlFXD"
    "8RiPyOfLMQyJyY2lWY5AAc4KBM6zJC43QyI4gQGsqG44nkBIBpU4XG4wYCWBZChapPUjPrS8g2FJliflCwqAZcPxFMAF"
    "nJPkNyVAEMS7QXkORTmUQmn58gKS4WlUohBVw/EMJeI8KlCYwOMkwqCMfEIkQQNAI4zcCPkKMySHYYi54s+NQRny/t9P"
    "85spPBRmZgPszMx6m72w2KOep4Hfmr+DXBvIYVFepIGMrIhL8reLFDAEFWSQUB4FFE/IpoEiJJkn/ehli6hJ01pMEdmJ"
    "E2e1YFtMiBbHGUbsWfmbA2SQGVb/naAZguQkmpd4jkE5mmVkq8FyPMmxxjAG6gBnR01lDPRiUNLWoKTDtp8UxE4p1Wnj"
    "DLTycv9DIDSBS0C2yjwnYRSKiqjcNaAMSYskiuEIgYvGMZffBNJqGrSmv8897XfOOsA6YG6m10KPS1N12vqUBnI5mUyM"
    "RRDZcZJIUvZjWI4iZV4FkpahphBelPR21ygyUB0VzpBc0yCXC01IPzsk5LDt/i2V/RoWqOR18Tb/1LcoOGBOUtjlMuFR"
    "8XKfrMzVhQU67ctvDDOngJRwGscxTPZYWYmmWBzBZK+WEziaFkT9EiycpQTeOGiGdthEaL7WkKNSJB5xKNoxIGFgwtCS"
    "K68czxdZD3Fa3uF+dtlX/c7qac7dVuud/I1Oe2Gh2Z+L2owjb8UO8mwaPN8MSokdbD0oK6i+41H+qbVMrMLyg/jfTeGs"
    "6mmXoClRO6tK1S3gCgCov0DLG2wkhYkEYGTryOrT+UgMpzkM0Y/SiTyKApJFUEakeePIlmoMs6VMxUbu8hyQZCCUEgiO"
    "oRiERCSKYnlKomkOITAaIQBJybskDEg4hhqHV+oICTUNQk83eKXrk+r804Wc4IC5jnF9fI/L8VVN2OWShjd0WmhnIcX/"
    "3na282DHH8pTZ7p9sqC4p37LOXjRK7NeOq2hkgUFSAxFMP3UGilxOEBIAsEJgkUFREA5muJEBkMxkTEGcjWKRpBc0yD3"
    "SoP9PScecbjQdv77/P+Pnds1Bl5t4UorU+F1r+fwoEz5UX94/5Yn6zq2cW7j8uLV/AUPZuvjf/Uf4n8/VaBdlTpJ46eK"
    "NoMVAKCgoKAMWmBmiKlIHuCIyIgEK4dRlGzbRVHgGUDyEoOiJClgHMVRCE4aR94AnH01kZ7+x+KMNkNl7/THyiMO+cn0"
    "wwDzVJfna7VuXu9XVJMUIrEiyjE4STECIFAEZyWKwBkM0ARDoiIiCTiOGIWPag1jKlMhd3si63swdHFWE32FqvcjACQn"
    "21dBxDhCFGkekxAOBQINEEDhjBxMcQCQgOAQ0jiyCW0hraZBa4ovW7wlaMO0rOSCOe0KC9+PtX5sNrhxjLXaQ15Ng9fv"
    "EzvX7XRKG534zD3mzLHzC32nPwxwFm9ZXNJprT6I/50VSzWd7ZZqHqhbqErVMP6HgoL6e8uQC/Cx68KMoWd3grkAptKz"
    "J/oeD52223oMk1TnP0JI0E/9r+1vyAW43vCGTmuoXfmxqyGNgWJ7eG8AU6G455cNfOIAoxBCZHkCpQQcwWiepjlGRhWX"
    "UIFHJYTXx/4SahwV1Kwgn6bBZ5zPFp+sDSfeqs0tti73OfFWIQdO+dAzgMwav2dg/UH876qoUg+0S9JUqYGqhWqiGfT+"
    "oaCgoD4UjKVgv//vHEvttg4tzmgz59ewy0/0t1lTzH3Hq2H+H4gERnE4IbEIQlMUTlFAonkeZSiSZDmWYHAZZ4bkjSOn"
    "GlZUNxFqjwdt3BK08fAcr4K5GWvez6cClhF4QqAZguYFgJEiDigG0DTDyWEVIrAiYFGaFo0ktoLzqSZC64WgPUd8D4Yu"
    "eTjaf9TeR+e/S2RjgwPcY45hcKQVkmtU3oFW84f8f0QVZHdfjagSNADO/kNBQUG909yGft1Q4UcicUbAWQ4BFImSck8v"
    "SYzAohKDIALJCBhPcKQkEMA48qhhhR8T6d8fFGd8EqT3R4d+s/7neWtlh1QyECtK+vKuAsMClhIEQQ6gRJrCAIdKAgUE"
    "icR4kkYlFhiHRwpzqU2E2DNBezqHTtttnjrLzWHx63AvnVaxxGBjeZageIriKIbleV4UKJqVaBJnKZRFWEkGVhA4CiWM"
    "gVgrRWNIrGkQey5oT0Lw6MCwyy/bDugcHODyvC9vrtPqlhrs7EdWqDcOO+sEqTUNaq8H7fUcKj/m/CPs8tsk4YfggLlo"
    "nE5r84f430c10G6jpkLto4qGs/9Qf4EMtVIYnKMpGpF4kaEFhOQwSZAolmB42T/lOZ4VBZTCedpIVvbBir+mEj85/baC"
    "+lRSXbeQZFaf95e7pdY7ucbALS1QpMgSGMPLkT8hCAwuEyyyGCGKpPyjSCMYSXAoaxwzUrCamolwWxmf5ulrsetM0LPa"
    "bsrXh5c5penv8evw2z1+DZ4pzXOMxAocwxCifLL627xwBMVwKMMDgUJYgHCiTLNkHPWpoGdqKjY3/jebe0K2uf2SCefg"
    "Mf24+Trt79TiLI7LEb9E0AzARIIlOBylGATlUHmXiNMsSaIkyhnHmmq4JsBUaq2ELHda/mSPTqF87V3qtNxnm0Oteen7"
    "yhUfe18748izgvMDJkLtEt/jdekPhzRJnek+70zrSzqt7Qfxv7NigybQbsO7+v8dVaVqGK1CQUH93QTr/8M+HNb/h/X/"
    "IcX/f/X/DflWQA7uWSCyHC9H+wLFkTyGM7gcSuEcAiSa4TFEAECQjCMHAEb/JkJvSZDP1vx2DrVeq89N1Wl/rwuMkqjE"
    "UDzKIDSGUiRFEgARKYLEWIJHgJ4sSUKNJCvQVuECaTUNWr9tqK7arFNVzPk9R3y2xAaPGeOwxONnndbug/jfVTFY09tu"
    "pWawxl51Xe0DVwBAQUH9DbNTEEkUeU5gOZpm9TefpgDAeURCJBSnAAZwkiREkuVwY+jH7WA/bir9eH6i6JsdmpC1/lys"
    "1+bzDbdXz/fSMJd0WoVh5gkRURTlaRIlRITACZbnKZ6SOAFlUFwCPIlzlEjQImoc7MKVp8bHbpVGj5OPgiF4nBNZFIi4"
    "KPASzbIChSGs/N+lGEy2ogKPAx4wggPMDYQEG3Fu4HydFiz7PT9QojCeJFGKkU+KERHZYZC5R0kaJwQRE2mCIgnZKBvH"
    "eJUrZNc02I0NXVa1NX9Gp6o5pedsipf7ZO1LrfVO+Uantf8n8//6/P8NGrgCAAoKCupD3xTm/8P+Heb/w/x/yO5fm/9v"
    "mP8XGZajBZolBEJEeIQjEDnC4iiWkBCeZlj9HVgBTwqMccRT8H6VpmJvnTJSnYe2Dbv8S9Q4nbY0zkAroClAA0LgKIIW"
    "CZGXMExgGAQwCCcIKI0yQORYhDOOqkCwYoWJ0JrTMP+/8VyslwOYXLxcHdThpyGn2+m0WoffPVwLPYSK/5ZMs3fXR/9s"
    "ppeFuf5Zpb8qlipLy3cPtbWV/FBbWlrZyJdOL3nL1kZjq//hHZnvftVMZW6u0qgt1Zo/rd/IRBTdIZmmQearS4FJ/Ztf"
    "md7e/1KbIxl92g9Tn3V7s2VObv12i7zaCs/Um837lvfq9cP0WdN+vD7908CSTlvbbxnf1+3a8ATlganPxkZput95Gn+k"
    "R+Ux96sZZc1shidqLPYnp60euMy9dOkgNwvPDePPuttdVBbcvkr0v3pO3HWr1YPhobbjoisTZkW0UEc3e+NZFD2lR8U8"
    "7ckD5ltTl504/WJfeFT8I5f0591SWi4KTd81eI2U+Px5eFXZwU7N7/hfOjaaPLJv0afUyfV9XjjXc4fWHs5u3X2G8ssC"
    "Nj61t9u8TcPKr3al7t1aN8Mje9gvyW2kxVZpyqi+nosbvwxGX85W7q+s6rVm+Pilvb85OYNr7DG5j0d0+ZTPXe8XXmza"
    "vffZZjPrk8PoUvThPPNX6yen9i6Ztz8dDxbHLqo9/Vmv8YG3K9oX1q85P6/q9O2bivn+T9qGeom+Gwa83p5zZ3an0Lqr"
    "WWU3Mr+61zT3273Xtk1/mz3k6KYrYzIynkeEZmaVlqRppzXrcCuF9cZKO2SE9HdbFZS95tM1SV+cuxhdfzzBY6l52vKS"
    "ipGnfvk6yqm3n+r06TzLsu5bhlVXKKhIRZLFU0ajPL73SsU/zn55s2D1E7fk+4t8gvetWrg6cN5mM5vVQzNej7p94Xqa"
    "840RK6/XEpfHp4oxjc48i1rRck/hqcQBX4wdVh1qXuvXtnBck845rXIeTBnRZcyozq9TM2+cjY0uCM36bHB8Wc31/o+k"
    "1Jcd0oofp+cc+eRY8077rt5demL40/K8/fF44LQTUw4tnrKyZvBZt3YdKeRNmvnVaZ5+D34aAyJU4+dcic6cPPWE76RR"
    "GedPOKa7unkzb266ZXnURsWNm6FYGtmrOnhEQVOy0ayJU7Y5mS/cM87tLGPr/v3YM8X+HjPzZnrvK95x9fz1Z4s61YjR"
    "/fop1LMmVrtXDlt1YsqXa4t+VZ5MFlyokJVjwKHw261T7qSHj7r1JLJL7IZ5DlNCTs8mq19MfH5j9vj1sz8Nu1Z3tFyn"
    "WHi4z46DO+KyBljN6jd5ZH+b7J0DwxpHtas4YdasXVLJgMsxr+et2O4ZMig9AozEe9jlJXUcIBXFZ5wc69KSV6/Mu2x/"
    "WZHV4WrOsMc1kU2G5MV5ti5NjfqhS/uQmkFrv2/Zs1myc8qCseaj4+4edd2LhL+8FXP8C+247+ekbrnzS/myouhzm+9N"
    "UXa1O1qT1XjsmC6ZAWFRQkp1/q66axFz4w+GfxP21T3mi/VuN0a1yvzuqOvG1OKzUY8fVZEbV5UGH7N9MDu5VUBC/s4+"
    "w7TZXKnXVN/4Fc+y3KLmvQgb0y9v4/2ScL+68Z1qJhbs+36hd/+9Kd8cGnUrcVjU+Ftfd97ZzqMp96B/YPXPuZH+01eB"
    "pmVu8ePqlZGXFr65Nir9kPWb3WuTWm0vbn76RMj+RnEtcpeX0NvDomJ600O+XtOxT/MrhS1rnT1vR9Q/61bIh3N7iopu"
    "RMw/MGrSjNl+y8vm5XpkZ6TGJpT8pFN02pjdN2r1m5GPD9uU+2RmbKt9HFdd43Il3iV+9smhiyNbtoz54lBRBVW7W7l5"
    "7Jrg2tVrpnc8GuFa7BsQVZQ90q5oU2JKQlbSUOn2zcIz563uTi0vc6l9g++N4Oq1fbftbtHF2yEvsMuwmoGnkhdMjB/t"
    "3+PGtlftTl4feNi/6Y0Rbi+Px0X6Vlbsl9Tu5f6jZywq9B+5INbs6IInrsNd00O3Jm3KrCt+MQrPXx/xoxCbMLMHMehU"
    "UUpSzadvq4tf5x28vT/r1B3thNi4azMatek2jm9clvOP4OZ9pq9df54u6uD/s+C7x71cyl1yOCY+tXKfe8hdrrioVdrY"
    "Vckj2q2ZddpfbB3dHJyJvr+37qrfqt1hEXt7TfKIbDG8lkwSS05GBriH9KixuFu51PlexLgTr5OSXmeWbbL/+smt26UX"
    "ZnROGn7jfJc+QxjOebHF0Wb2fQqbPaq1b1s4d8X0PZfn7B7e60J4hxl909+u2/uQfVo2a/aAL6bPivB7eWPAo4NDf8qq"
    "H5U24UVMEjpz3tMXdUHu3PcbTn/b0+XEwRxh5UlFswXcgBt8Dt85uO8Lt4rwykYlUQGrUvcPbxnQPTRs2vzjBTVWBZaq"
    "3q3tdqTkfX3wUP62zNLdu/yD8w5H7+2/L7rUWrXM/t5XU5dWrp7wYsn0nZsGTZ46dWKl1ZuRa3beU4QPfBqUTY/16pBy"
    "Pr2c1jT55fL9fquRdSfveeceiM9b9VNp1MbquVRuSs36G+wezfbGc2s25f58O+fxlfo0cW7Tx/6er8rUByPcXce3OJDs"
    "3fdRnq/33AXbJx62+zZ7+kWznV2V+4vfoveODJi9bPuh/DbbG/suG2Q5sYvTxSYPhFuXyWdPHVdOHY1+Gz6/du2a6paq"
    "yt0l2ZE5X7f2+6rCZ/XKAS6rrXSKaT+2sH29fuHbCW02dpkrnWaiY8KffpHY+rF3kWRT9OSHzavKNyNn7o7sn/jJCgfX"
    "7XUJEw+1zYz8ObPi+q6qS7Fd3Tuve/0m7frbjZOOYk9n9M+cdOvobM+Dn7eOXXLkyCOdYiuRE3zhwI5Nk5KmNq6c4jJw"
    "X2V+4L1hi7aHP7zudGbXxWmPOkT0zky0y+nbbEHfKXzkRdJp8MrIY0PdivZkvMzNGdW19GzrQ1HIKgn5VYrZHGmXcPbE"
    "WDba2iK62ehXpWcnu66dPhePeRrWcfn9upMt41Zf86J/beWc+NOW/aqR4Mazx44V322aPj7y0IoZ4R0mJB35Zai4tQuy"
    "wb3Pm8CSvPVlj767dehOz1uTb+8XZjR3erKkOuXwRsvcqb69bCdcntDJ7+Z9emQHx6SSz+iS6O3RMeXj0sbHEjV7wac/"
    "UCEn3Xqu7TiusjWrLOSajO/WvivmUZ7yaxfxntZvx4pB18T1c2KqO5ya7LsuN7TXxpvN+nj5xc4pqKgeG1bctc39V9Vp"
    "a4JuVCwUfeKiir9epObS+06qrLUa290tJE2T2vvXOfdtU3bN7td60p2sVxvf3rr2esLswXTYo0avfwmdHRG1JovIrZ6W"
    "l5Tys06h0/7fx1M28G4VpuK1Dt6V7rxr94Po+cq7+vR/w9wAzxE4R9AEhfOYIIqkCFiEF0iMZShE4kgUkASKiMax0soZ"
    "zg2YCq1XgzZM2xmyw7NDRfQYZf3iZfKmz9aVTX6bG/gPU55RGA==")


def _lmdb_bytes():
  return zlib.decompress(base64.b64decode(LMDB_B64))


def _quiet_cpu_workers(monkeypatch):
  monkeypatch.setattr(prepared, "default_workers", lambda: 2)


@pytest.fixture(autouse=True)
def _two_workers(monkeypatch):
  _quiet_cpu_workers(monkeypatch)


def _jpeg(array, quality=90):
  b = io.BytesIO()
  Image.fromarray(array).save(b, "JPEG", quality=quality)
  return b.getvalue()


def _png(array):
  b = io.BytesIO()
  Image.fromarray(array).save(b, "PNG")
  return b.getvalue()


def _noise(h, w, c=3, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)


# --------------------------------------------------------------------------
# Names, shapes, classes, registry.


def test_names_shapes_and_classes():
  assert data.SUPPORTED == ("mnist", "fashion_mnist", "celeb_a", "lsun/bedroom")
  assert image_shape("celeb_a") == (96, 96, 3)
  assert image_shape("lsun/bedroom", 64) == (64, 64, 3)
  assert image_shape("mnist") == (28, 28, 1) and image_shape("fashion_mnist", 96) == (96, 96, 1)
  assert image_shape("folder:/any/where") == (96, 96, 3)
  assert image_shape(data.TWO_CLASS_LSUN) == (96, 96, 3)
  assert num_classes("mnist") == 10 and num_classes("celeb_a") == 2
  assert num_classes("celeb_a", label_attribute="Smiling") == 2
  assert num_classes("lsun/bedroom") == 1 and num_classes("folder:/x") == 1
  assert num_classes(data.TWO_CLASS_LSUN) == 2
  assert data.TWO_CLASS_LSUN == "lsun/bedroom+lsun/church_outdoor"
  for name in ("celeb_a", "lsun/kitchen", "lsun/cat", "folder:/x", "mnist+fashion_mnist",
               "lsun/bedroom+lsun/church_outdoor"):
    assert data.is_supported(name), name
  for name in ("cifar10", "lsun/nope", "folder:relative/path", "folder:", "mnist+celeb_a",
               "lsun/bedroom+lsun/bedroom", "lsun/bedroom+folder:/x", "lsun/", 3):
    assert not data.is_supported(name), name
    with pytest.raises(DatasetError):
      core.parts(name)
  with pytest.raises(DatasetError, match="label_attribute applies to celeb_a"):
    num_classes("lsun/bedroom", label_attribute="Male")
  with pytest.raises(DatasetError, match="Unknown CelebA attribute"):
    num_classes("celeb_a", label_attribute="male")


def test_celeb_a_registry_matches_tfds_builder():
  import tensorflow_datasets as tfds
  root = Path(tfds.__file__).parent / "datasets" / "celeb_a"
  rows = [line.split("\t") for line in (root / "checksums.tsv").read_text().splitlines()
          if line.strip()]
  registered = {r[3].strip() for r in rows}
  s = core.spec("celeb_a")
  assert set(s.manual_files) == registered and len(s.manual_files) == 5
  builder_src = (root / "celeb_a_dataset_builder.py").read_text()
  start = builder_src.index("ATTR_HEADINGS = (")
  headings = builder_src[start:builder_src.index(").split()", start)]
  words = " ".join(part.strip().strip('"') for part in headings.splitlines()[1:]).split()
  assert tuple(words) == data.CELEBA_ATTRIBUTES
  assert 'shape=(218, 178, 3)' in builder_src and s.tfds_name == "celeb_a:2.1.0"
  assert 'VERSION = tfds.core.Version("2.1.0")' in builder_src


def test_lsun_registry_from_tfds_checksums():
  scenes, objects = core.lsun_categories()
  assert {"bedroom", "church_outdoor", "kitchen"} <= set(scenes) and len(scenes) == 10
  assert {"cat", "person"} <= set(objects) and len(objects) == 20
  assert core.lsun_archive_name("bedroom", "train") == "bedroom_train_lmdb.zip"
  assert core.lsun_archive_name("bedroom", "validation") == "bedroom_val_lmdb.zip"
  assert core.lsun_archive_name("cat", "train") == "cat.zip"
  with pytest.raises(DatasetError, match="only the split 'train'"):
    core.lsun_archive_name("cat", "validation")
  with pytest.raises(DatasetError, match="'train' and 'validation'"):
    core.lsun_archive_name("bedroom", "test")
  files = core.lsun_registered_files()
  url, size = files["bedroom_train_lmdb.zip"]
  assert url == "http://dl.yf.io/lsun/scenes/bedroom_train_lmdb.zip" and size > 4e10
  s = core.spec("lsun/church_outdoor")
  assert s.manual_files == ("church_outdoor_train_lmdb.zip", "church_outdoor_val_lmdb.zip")
  assert s.channels == 3 and s.kind == "lsun"


def test_crop_boxes():
  # CelebA's aligned 218x178 images: the 108x108 centre crop starts at top 55, left 35.
  assert imageproc.crop_box(imageproc.CELEBA_CROP, 218, 178) == (35, 55, 143, 163)
  assert imageproc.crop_box("center_short_side", 256, 341) == (42, 0, 298, 256)
  assert imageproc.crop_box("center_short_side", 101, 100) == (0, 0, 100, 100)
  with pytest.raises(ValueError):
    imageproc.crop_box("center:108", 100, 178)


# --------------------------------------------------------------------------
# Folder datasets.


def _write_folder(root: Path):
  """9 candidate files: 6 images (mixed formats, sizes, modes), a truncated JPEG, a
  text file, and a file named like an image that is not one; plus ignored hidden
  files.  Returns {relative path: source array} of the images."""
  (root / "sub" / "deeper").mkdir(parents=True)
  (root / ".hidden_dir").mkdir()
  images = {
      "a.png": _noise(30, 40, seed=1),                       # upsampled (30 < 96)
      "sub/b.jpg": _noise(200, 120, seed=2),                 # portrait, downsampled
      "sub/deeper/c.JPG": _noise(97, 97, 1, seed=3),         # grayscale
      "exact.png": _noise(96, 100, seed=4),                  # no resize: crop only
      "noext": _noise(64, 64, seed=5),                       # a PNG without extension
      "wide.webp.png": _noise(50, 300, seed=6),              # landscape
  }
  for rel, arr in images.items():
    path = root / rel
    if rel.lower().endswith((".jpg", ".jpeg")):
      path.write_bytes(_jpeg(arr))
    else:
      path.write_bytes(_png(arr))
  # An RGBA PNG that is fully transparent: composited onto white.
  rgba = np.zeros((40, 40, 4), np.uint8)
  (root / "sub" / "transparent.png").write_bytes(_png(rgba))
  images["sub/transparent.png"] = None
  whole = _jpeg(_noise(80, 80, seed=7))
  (root / "truncated.jpg").write_bytes(whole[:len(whole) // 2])
  (root / "notes.txt").write_text("not an image\n")
  (root / "sub" / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing after")
  (root / ".DS_Store").write_bytes(b"\0" * 10)
  (root / ".hidden_dir" / "x.png").write_bytes(_png(_noise(10, 10)))
  return images


def _manifest(path):
  return json.loads((Path(path) / "manifest.json").read_text())


def test_folder_dataset_end_to_end(tmp_path, capsys):
  root = tmp_path / "images"
  images = _write_folder(root)
  d = str(tmp_path / "tfds")
  name = f"folder:{root}"
  x, y = load_images(name, data_dir=d)
  assert x.shape == (7, 96, 96, 3) and x.dtype == np.uint8
  assert y.dtype == np.int32 and (y == 0).all()
  err = capsys.readouterr().err
  assert "3 skipped" in err and "truncated.jpg" in err

  path = core.prepared_path(d, core.spec(name), "train", 96)
  m = _manifest(path)
  assert m["count"] == 7 and m["source_items"] == 10
  assert m["upsampled"] == 4  # a.png, noext, transparent.png, wide.webp.png: short side < 96
  assert m["skipped"]["count"] == 3
  assert sorted(s["id"] for s in m["skipped"]["items"]) == [
      "notes.txt", "sub/fake.png", "truncated.jpg"]
  r = m["recipe"]
  assert r["crop"] == "center_short_side" and r["resolution"] == 96 and r["channels"] == 3
  assert "BICUBIC" in r["resize"] and "antialias" in r["resize"]
  assert r["source"] == f"folder {root}" and r["files"] == 10 and len(r["fingerprint"]) == 64
  assert "exif_transpose" in r["decode"]
  ids = np.load(Path(path) / "ids.npy").tolist()
  assert [i.decode() for i in ids] == [
      "a.png", "exact.png", "noext", "sub/b.jpg", "sub/deeper/c.JPG", "sub/transparent.png",
      "wide.webp.png"]
  for s in m["shards"]:
    blob = (Path(path) / s["file"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == s["sha256"] and len(blob) == s["bytes"]
    assert np.load(Path(path) / s["file"], mmap_mode="r").shape == (s["count"], 96, 96, 3)

  # Pixels, independently of imageproc: the 100x96 image is cropped to its centre 96x96.
  np.testing.assert_array_equal(x[1], images["exact.png"][:, 2:98])
  gray = images["sub/deeper/c.JPG"]
  assert (x[4, ..., 0] == x[4, ..., 1]).all() and (x[4, ..., 1] == x[4, ..., 2]).all()
  assert gray.shape == (97, 97)
  assert (x[5] == 255).all()  # transparent -> white
  ref = Image.open(root / "sub" / "b.jpg").convert("RGB").crop((0, 40, 120, 160))
  np.testing.assert_array_equal(x[3], np.asarray(ref.resize((96, 96), Image.BICUBIC)))
  assert ref.size == (120, 120)

  # Prepared once: a second load reads the shards (no rebuild), same arrays.
  mtime = os.path.getmtime(Path(path) / "manifest.json")
  x2, y2 = load_images(name, data_dir=d)
  np.testing.assert_array_equal(x2, x)
  assert os.path.getmtime(Path(path) / "manifest.json") == mtime
  assert dataset_size(name, data_dir=d) == 7

  # Deterministic: another data dir gives byte-identical shards.
  d2 = str(tmp_path / "tfds2")
  load_images(name, data_dir=d2)
  m2 = _manifest(core.prepared_path(d2, core.spec(name), "train", 96))
  assert [s["sha256"] for s in m2["shards"]] == [s["sha256"] for s in m["shards"]]

  # A change in the folder is noticed: rebuilt, not silently stale.
  (root / "sub" / "new.png").write_bytes(_png(_noise(120, 120, seed=9)))
  x3, _ = load_images(name, data_dir=d)
  assert x3.shape[0] == 8
  assert "rebuilding" in capsys.readouterr().err

  # Another resolution is another prepared dataset.
  x32, _ = load_images(name, data_dir=d, resolution=32)
  assert x32.shape == (8, 32, 32, 3)


def test_folder_errors(tmp_path):
  empty = tmp_path / "empty"
  (empty / "sub" / ".git").mkdir(parents=True)
  (empty / ".DS_Store").write_bytes(b"x")
  d = str(tmp_path / "tfds")
  with pytest.raises(DatasetError, match=f"Folder dataset {empty} contains no files"):
    load_images(f"folder:{empty}", data_dir=d)
  with pytest.raises(DatasetError, match="contains no files"):
    data.prepare(f"folder:{empty}", data_dir=d)
  junk = tmp_path / "junk"
  junk.mkdir()
  (junk / "a.txt").write_text("hello")
  (junk / "b.jpg").write_bytes(b"\xff\xd8\xff garbage")
  with pytest.raises(DatasetError, match=r"no readable image \(2 item\(s\) could not be read"):
    load_images(f"folder:{junk}", data_dir=d)
  with pytest.raises(DatasetError, match="does not exist"):
    load_images(f"folder:{tmp_path / 'absent'}", data_dir=d)
  with pytest.raises(DatasetError, match="absolute path"):
    load_images("folder:images", data_dir=d)
  with pytest.raises(DatasetError, match="one split, 'train'"):
    load_images(f"folder:{junk}", "test", data_dir=d)
  with pytest.raises(DatasetError, match="not prepared.*igan_jax.data.prepare"):
    (junk / "ok.png").write_bytes(_png(_noise(8, 8)))
    load_images(f"folder:{junk}", data_dir=d, prepare_if_missing=False)
  assert not [p for p in (Path(d) / "igan_jax_cache").iterdir() if p.name.endswith(".partial")]


def _solid_folder(root: Path, n: int):
  """n images, image i filled with 20 * i (so a pixel tells which image it is)."""
  root.mkdir()
  for i in range(n):
    h, w = 20 + 7 * i, 30 + 3 * i
    (root / f"img{i:02d}.png").write_bytes(_png(np.full((h, w, 3), 20 * i, np.uint8)))


@pytest.fixture
def small_shards(monkeypatch):
  monkeypatch.setattr(prepared, "SHARD_BYTES", 3 * 16 * 16 * 3)  # 3 images per shard at 16x16


def test_multi_shard_build_and_resume(tmp_path, small_shards, monkeypatch, capsys):
  root = tmp_path / "solid"
  _solid_folder(root, 10)
  name = f"folder:{root}"
  fresh = str(tmp_path / "fresh")
  x, _ = load_images(name, data_dir=fresh, resolution=16)
  assert x.shape == (10, 16, 16, 3)
  assert x[:, 0, 0, 0].tolist() == [20 * i for i in range(10)]
  m = _manifest(core.prepared_path(fresh, core.spec(name), "train", 16))
  assert [s["count"] for s in m["shards"]] == [3, 3, 3, 1] and m["images_per_shard"] == 3

  # Interrupted after two shards: the next run resumes and gives the same result.
  calls = []
  real = prepared.process_range

  def flaky(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return real(*args, **kwargs)

  monkeypatch.setattr(prepared, "process_range", flaky)
  d = str(tmp_path / "resumed")
  with pytest.raises(KeyboardInterrupt):
    load_images(name, data_dir=d, resolution=16)
  path = core.prepared_path(d, core.spec(name), "train", 16)
  assert not os.path.exists(path)
  assert json.loads((Path(path + ".partial") / "progress.json").read_text())["done"] == 2
  monkeypatch.setattr(prepared, "process_range", real)
  x2, _ = load_images(name, data_dir=d, resolution=16)
  assert "resuming the preparation" in capsys.readouterr().err
  np.testing.assert_array_equal(x2, x)
  assert [s["sha256"] for s in _manifest(path)["shards"]] == [s["sha256"] for s in m["shards"]]
  assert not os.path.exists(path + ".partial")

  # A damaged shard is noticed on open and rebuilt.
  shard = Path(path) / "images-00001.npy"
  shard.write_bytes(shard.read_bytes()[:-5])
  x3, _ = load_images(name, data_dir=d, resolution=16)
  np.testing.assert_array_equal(x3, x)
  assert "damaged shard" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Streaming.


def _values(batch):
  return batch[0][:, 0, 0, 0].astype(int) // 20


def test_stream_batches_order_resume_and_threads(tmp_path, small_shards):
  root = tmp_path / "solid"
  _solid_folder(root, 10)
  name, d = f"folder:{root}", str(tmp_path / "tfds")
  kw = dict(batch_size=4, data_dir=d, resolution=16)
  with stream_batches(name, seed=1, **kw) as s:
    assert s.dataset_size == 10 and s.image_shape == (16, 16, 3) and s.position == 0
    batches = [next(s) for _ in range(8)]  # 32 samples: epochs 0, 1, 2 and part of 3
    assert s.position == 32 and s.epoch == 3
  assert not s.thread_alive
  with pytest.raises(StopIteration):
    next(s)
  seq = np.concatenate([_values(b) for b in batches])
  for e in range(3):  # each epoch is a permutation of the 10 images
    assert sorted(seq[10 * e:10 * e + 10].tolist()) == list(range(10))
  assert seq[:10].tolist() != seq[10:20].tolist()
  for b in batches:
    assert b[0].shape == (4, 16, 16, 3) and b[0].dtype == np.uint8
    assert b[1].shape == (4,) and b[1].dtype == np.int32 and (b[1] == 0).all()
    assert b[0].flags["C_CONTIGUOUS"]
  # The order is a pure function of (seed, epoch).
  for e in range(3):
    np.testing.assert_array_equal(seq[10 * e:10 * e + 10],
                                  stream_lib.epoch_permutation(1, e, 10))

  # Same seed, other prefetch depth: same batches; other seed: another order.
  with stream_batches(name, seed=1, prefetch=1, **kw) as s:
    again = [next(s) for _ in range(8)]
  for a, b in zip(batches, again):
    np.testing.assert_array_equal(a[0], b[0])
  with stream_batches(name, seed=2, **kw) as s:
    assert np.concatenate([_values(next(s)) for _ in range(3)])[:10].tolist() != \
        seq[:10].tolist()

  # Resume from a sample index = continuing (also across an epoch boundary, mid-batch).
  for start in (8, 12, 6):
    with stream_batches(name, seed=1, start_index=start, **kw) as s:
      got = np.concatenate([_values(next(s)) for _ in range(4)])
      assert s.position == start + 16
    np.testing.assert_array_equal(got, seq[start:start + 16])

  # keep: some positions of each batch (a process's rows), the global stream's order kept.
  with stream_batches(name, seed=1, start_index=4, keep=[3, 1], **kw) as s:
    got = np.concatenate([_values(next(s)) for _ in range(3)])
    assert s.position == 16
  np.testing.assert_array_equal(got, seq[[7, 5, 11, 9, 15, 13]])

  # A subset for evaluation (e.g. FID reals) = the first samples of epoch 0.
  x, y = data.sample_images(name, 7, seed=1, data_dir=d, resolution=16)
  assert x.shape == (7, 16, 16, 3) and y.shape == (7,)
  np.testing.assert_array_equal(_values((x, y)), seq[:7])
  with pytest.raises(DatasetError, match="has 10 images, fewer than the 11 asked for"):
    data.sample_images(name, 11, data_dir=d, resolution=16)

  # Batches larger than the dataset span epochs.
  with stream_batches(name, seed=1, batch_size=25, data_dir=d, resolution=16) as s:
    np.testing.assert_array_equal(_values(next(s)), seq[:25])

  # The prefetch thread ends when the stream is dropped without close().
  s = stream_batches(name, seed=1, **kw)
  next(s)
  thread = s._thread
  del s
  gc.collect()
  thread.join(timeout=5)
  assert not thread.is_alive()


def test_stream_errors_reach_the_consumer(tmp_path, small_shards):
  root = tmp_path / "solid"
  _solid_folder(root, 10)
  name, d = f"folder:{root}", str(tmp_path / "tfds")
  with pytest.raises(DatasetError, match="batch_size"):
    stream_batches(name, batch_size=0, data_dir=d)
  with pytest.raises(DatasetError, match="start_index"):
    stream_batches(name, start_index=-1, data_dir=d)
  with pytest.raises(DatasetError, match=r"keep must be positions in \[0, 4\)"):
    stream_batches(name, batch_size=4, keep=[4], data_dir=d)
  with pytest.raises(DatasetError, match="no image of class 1"):
    stream_batches(name, label=1, data_dir=d, resolution=16)
  s = stream_batches(name, batch_size=10, data_dir=d, resolution=16, prefetch=1)
  next(s)
  path = core.prepared_path(d, core.spec(name), "train", 16)
  for shard in Path(path).glob("images-*.npy"):  # damaged under a running stream
    shard.write_bytes(shard.read_bytes()[:200])
  with pytest.raises(DatasetError, match="Short read"):
    for _ in range(5):
      next(s)
  time.sleep(0.2)
  assert not s.thread_alive
  s.close()


# --------------------------------------------------------------------------
# LSUN: the LMDB reader and the archives.


def test_lmdb_reader_matches_reference(tmp_path):
  path = tmp_path / "data.mdb"
  path.write_bytes(_lmdb_bytes())
  reader = lsun.LmdbReader(lsun.FileRange(str(path)))
  assert reader.entries == LMDB_ENTRIES and reader.psize == 4096
  items = [(k, reader.read_value(o, n)) for k, o, n in reader.items()]
  h = hashlib.sha256()
  for k, v in items:
    h.update(k + b"\0" + v + b"\0")
  assert h.hexdigest() == LMDB_DIGEST
  assert [k for k, _ in items] == sorted(k for k, _ in items)
  assert max(len(v) for _, v in items) == 2792  # the overflow-page value
  for start in (0, 1, 5, 17, 41, 42):  # resuming mid-leaf and at leaf boundaries
    assert [k for k, _, _ in reader.items(start)] == [k for k, _ in items[start:]]
  with pytest.raises(DatasetError, match="not an LMDB"):
    bad = tmp_path / "bad.mdb"
    bad.write_bytes(b"\0" * 8192)
    lsun.LmdbReader(lsun.FileRange(str(bad)))


def _lsun_manual(base: Path, kind: str, monkeypatch) -> str:
  """A data dir whose manual dir holds the fixture as bedroom's train archive."""
  manual = base / "downloads" / "manual"
  manual.mkdir(parents=True)
  mdb = _lmdb_bytes()
  if kind == "extracted":
    (manual / "bedroom_train_lmdb").mkdir()
    (manual / "bedroom_train_lmdb" / "data.mdb").write_bytes(mdb)
  else:
    compression = zipfile.ZIP_STORED if kind == "stored" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(manual / "bedroom_train_lmdb.zip", "w", compression) as z:
      z.writestr("bedroom_train_lmdb/lock.mdb", b"\0" * 100)
      z.writestr("bedroom_train_lmdb/data.mdb", mdb)
    files = dict(core.lsun_registered_files())
    url = files["bedroom_train_lmdb.zip"][0]
    files["bedroom_train_lmdb.zip"] = (url, (manual / "bedroom_train_lmdb.zip").stat().st_size)
    monkeypatch.setattr(core, "lsun_registered_files", lambda: files)
  return str(base)


def test_lsun_from_archives(tmp_path, monkeypatch, capsys):
  results = {}
  for kind in ("extracted", "stored", "deflated"):
    d = _lsun_manual(tmp_path / kind, kind, monkeypatch)
    x, y = load_images("lsun/bedroom", "train", data_dir=d)
    assert x.shape == (41, 96, 96, 3) and x.dtype == np.uint8 and (y == 0).all()
    path = core.prepared_path(d, core.spec("lsun/bedroom"), "train", 96)
    m = _manifest(path)
    assert m["skipped"]["count"] == 1 and m["skipped"]["items"][0]["id"] == CORRUPT_KEY
    assert m["recipe"]["source"] == "LSUN bedroom_train_lmdb.zip (LMDB, key order)"
    assert m["recipe"]["crop"] == "center_short_side"
    ids = np.load(Path(path) / "ids.npy").tolist()
    assert len(ids) == 41 and ids == sorted(ids) and CORRUPT_KEY.encode() not in ids
    leftovers = [p for p in (Path(d) / "igan_jax_cache").iterdir() if "data.mdb" in p.name]
    assert leftovers == []  # a deflated archive's extracted copy is deleted when done
    results[kind] = (x, ids)
    assert "1 skipped" in capsys.readouterr().err
  # An interrupted preparation keeps the extracted copy of a deflated archive for the rerun.
  real = prepared.process_range
  monkeypatch.setattr(prepared, "process_range", lambda *a, **k: (_ for _ in ()).throw(
      KeyboardInterrupt()))
  d = _lsun_manual(tmp_path / "again", "deflated", monkeypatch)
  with pytest.raises(KeyboardInterrupt):
    load_images("lsun/bedroom", data_dir=d)
  kept = Path(d) / "igan_jax_cache" / ".extracted-bedroom_train_lmdb-data.mdb"
  assert kept.read_bytes() == _lmdb_bytes()
  monkeypatch.setattr(prepared, "process_range", real)
  assert "extracting" in capsys.readouterr().err
  np.testing.assert_array_equal(load_images("lsun/bedroom", data_dir=d)[0],
                                results["extracted"][0])
  assert "extracting" not in capsys.readouterr().err and not kept.exists()
  for kind in ("stored", "deflated"):
    np.testing.assert_array_equal(results[kind][0], results["extracted"][0])
    assert results[kind][1] == results["extracted"][1]

  # Pixels, independently of imageproc: the 64x48 overflow image, centre 48x48, bicubic.
  x, ids = results["extracted"]
  reader = lsun.LmdbReader(lsun.FileRange(str(
      tmp_path / "extracted" / "downloads" / "manual" / "bedroom_train_lmdb" / "data.mdb")))
  values = {k: reader.read_value(o, n) for k, o, n in reader.items()}
  big = hashlib.sha1(b"big").hexdigest().encode()
  ref = Image.open(io.BytesIO(values[big])).convert("RGB").crop((8, 0, 56, 48))
  np.testing.assert_array_equal(x[ids.index(big)],
                                np.asarray(ref.resize((96, 96), Image.BICUBIC)))

  # Streaming straight from the prepared LSUN shards.
  d = str(tmp_path / "extracted")
  with stream_batches("lsun/bedroom", batch_size=16, seed=3, data_dir=d) as s:
    b = [next(s) for _ in range(3)]
  order = stream_lib.epoch_permutation(3, 0, 41)
  np.testing.assert_array_equal(np.concatenate([b[0][0], b[1][0], b[2][0][:9]]), x[order])


def test_lsun_missing_or_wrong_archives(tmp_path, monkeypatch):
  d = str(tmp_path)
  manual = os.path.join(d, "downloads", "manual")
  with pytest.raises(DatasetError) as e:
    load_images("lsun/bedroom", "train", data_dir=d)
  msg = str(e.value)
  assert f"bedroom_train_lmdb.zip is not in the manual dir {manual}" in msg
  assert "http://dl.yf.io/lsun/scenes/bedroom_train_lmdb.zip" in msg
  assert "bedroom_val_lmdb" not in msg and "\n" not in msg
  with pytest.raises(DatasetError, match="bedroom_val_lmdb.zip is not in the manual dir"):
    stream_batches("lsun/bedroom", "validation", data_dir=d)
  with pytest.raises(DatasetError) as e:
    data.prepare("lsun/bedroom", data_dir=d)
  assert f"bedroom_train_lmdb.zip, bedroom_val_lmdb.zip are not in the manual dir {manual}" \
      in str(e.value)
  with pytest.raises(DatasetError, match=r"Cannot prepare lsun/bedroom\+lsun/church_outdoor: "
                                         r"bedroom_train_lmdb.zip, church_outdoor_train_lmdb.zip "
                                         r"are not in the manual dir"):
    load_images(data.TWO_CLASS_LSUN, data_dir=d)
  with pytest.raises(DatasetError, match="'train' and 'validation'"):
    load_images("lsun/bedroom", "test", data_dir=d)
  # A truncated download is named as such.
  os.makedirs(manual)
  Path(manual, "bedroom_train_lmdb.zip").write_bytes(b"PK" + b"\0" * 100)
  with pytest.raises(DatasetError, match="has 102 bytes, not the 45922737680 TFDS registered"):
    load_images("lsun/bedroom", data_dir=d)
  assert not os.path.exists(os.path.join(d, "igan_jax_cache", "lsun_bedroom-train-96"))


# --------------------------------------------------------------------------
# CelebA and LSUN under tfds.testing.mock_data: in memory, nothing written.


def test_celeb_a_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  d = str(tmp_path)
  with tfds.testing.mock_data(num_examples=8):
    x, y = load_images("celeb_a", "train", data_dir=d)
    assert x.shape == (8, 96, 96, 3) and x.dtype == np.uint8
    assert y.shape == (8,) and y.dtype == np.int32
    src = tfds.data_source("celeb_a:2.1.0", split="train", data_dir=d, download=False)
    examples = [src[i] for i in range(8)]
    assert y.tolist() == [int(ex["attributes"]["Male"]) for ex in examples]
    assert set(y.tolist()) == {0, 1}
    assert examples[0]["image"].shape == (218, 178, 3)
    ref = Image.fromarray(examples[0]["image"]).crop((35, 55, 143, 163))
    np.testing.assert_array_equal(x[0], np.asarray(ref.resize((96, 96), Image.BICUBIC)))

    names, attrs = load_attributes("celeb_a", "train", data_dir=d)
    assert names == data.CELEBA_ATTRIBUTES and attrs.shape == (8, 40) and attrs.dtype == bool
    assert attrs[:, names.index("Smiling")].tolist() == [
        bool(ex["attributes"]["Smiling"]) for ex in examples]
    _, ys = load_images("celeb_a", data_dir=d, label_attribute="Smiling")
    assert ys.tolist() == attrs[:, names.index("Smiling")].astype(int).tolist()
    assert dataset_size("celeb_a", "validation", data_dir=d) == 8

    with stream_batches("celeb_a", batch_size=5, seed=0, data_dir=d, label=1) as s:
      xb, yb = next(s)
      assert s.dataset_size == int(y.sum())
    assert xb.shape == (5, 96, 96, 3) and (yb == 1).all()
    males = {x[i].tobytes() for i in np.flatnonzero(y == 1)}
    assert all(img.tobytes() in males for img in xb)
  assert list(tmp_path.iterdir()) == []  # nothing cached for fake data


def test_lsun_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  d = str(tmp_path)
  with tfds.testing.mock_data(num_examples=5):
    x, y = load_images("lsun/bedroom", "train", data_dir=d)
    assert x.shape == (5, 96, 96, 3) and x.dtype == np.uint8 and (y == 0).all()
    assert x.std() > 0
    x2, y2 = load_images(data.TWO_CLASS_LSUN, data_dir=d)
    assert x2.shape == (10, 96, 96, 3) and y2.tolist() == [0] * 5 + [1] * 5
    with stream_batches(data.TWO_CLASS_LSUN, batch_size=3, data_dir=d, label=1) as s:
      assert (next(s)[1] == 1).all() and s.dataset_size == 5
    assert dataset_size(data.TWO_CLASS_LSUN, data_dir=d) == 10
  assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------
# CelebA's real (non-mock) read path, with TFDS's data source replaced by a fake one.


class _FakeCelebASource:
  def __init__(self, n):
    self.examples = []
    for i in range(n):
      attrs = {a: bool((i >> (j % 5)) & 1) for j, a in enumerate(data.CELEBA_ATTRIBUTES)}
      self.examples.append({"image": _jpeg(_noise(218, 178, seed=i)), "attributes": attrs,
                            "landmarks": {}, "identity": {"Identity_No": i}})
    self.reads = 0

  def __len__(self):
    return len(self.examples)

  def __getitems__(self, keys):
    self.reads += len(keys)
    return [self.examples[k] for k in keys]


def test_celeb_a_prepared_from_tfds_without_decoding_there(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds
  fake = _FakeCelebASource(7)
  seen = {}

  def data_source(name, split, data_dir, download, builder_kwargs, decoders=None):
    seen.update(name=name, split=split, download=download, decoders=decoders)
    return fake

  monkeypatch.setattr(tfds, "data_source", data_source)
  monkeypatch.setattr(tfds_prepare, "is_prepared", lambda name, data_dir=None: True)
  d = str(tmp_path)
  x, y = load_images("celeb_a", "train", data_dir=d)
  assert seen["name"] == "celeb_a:2.1.0" and seen["download"] is False
  assert isinstance(seen["decoders"]["image"], tfds.decode.SkipDecoding)
  assert x.shape == (7, 96, 96, 3) and fake.reads == 7
  male = data.CELEBA_ATTRIBUTES.index("Male")
  assert y.tolist() == [int(bool((i >> (male % 5)) & 1)) for i in range(7)]
  ref = Image.open(io.BytesIO(fake.examples[3]["image"])).convert("RGB")
  ref = ref.crop((35, 55, 143, 163)).resize((96, 96), Image.BICUBIC)
  np.testing.assert_array_equal(x[3], np.asarray(ref))

  path = Path(d) / "igan_jax_cache" / "celeb_a-train-96"
  m = _manifest(path)
  assert m["recipe"]["crop"] == "center:108" and "top 55, left 35" in m["recipe"]["crop_text"]
  assert m["labels"]["num_classes"] == 2 and "Male" in m["labels"]["meaning"]
  assert m["attributes"]["names"] == list(data.CELEBA_ATTRIBUTES)
  assert m["ids"] is None and m["upsampled"] == 0
  assert np.load(path / "attributes.npy").shape == (7, 40)

  x2, y2 = load_images("celeb_a", "train", data_dir=d)  # from the shards, TFDS not read
  assert fake.reads == 7
  np.testing.assert_array_equal(x2, x)
  with pytest.raises(DatasetError, match="not prepared at 96x96.*--split=test"):
    load_images("celeb_a", "test", data_dir=d, prepare_if_missing=False)


def test_celeb_a_missing_manual_files_one_message(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds_prepare, "unreachable",
                      lambda url, timeout=10.0: "cannot connect to drive.google.com:443")
  d = str(tmp_path)
  manual = os.path.join(d, "downloads", "manual")
  with pytest.raises(DatasetError) as e:
    data.prepare("celeb_a", data_dir=d)
  msg = str(e.value)
  assert f"the manual dir {manual}" in msg and msg.count(manual) == 2
  for f in ("img_align_celeba.zip", "list_attr_celeba.txt", "list_eval_partition.txt",
            "list_landmarks_align_celeba.txt", "identity_CelebA.txt"):
    assert f in msg
  assert "mmlab.ie.cuhk.edu.hk" in msg and "\n" not in msg
  os.makedirs(manual)
  for f in core.spec("celeb_a").manual_files[1:]:
    Path(manual, f).write_text("x")
  with pytest.raises(DatasetError, match=f"img_align_celeba.zip is missing from the manual "
                                         f"dir {manual}"):
    data.prepare("celeb_a", data_dir=d)


def test_celeb_a_load_prepares_tfds_in_a_subprocess(tmp_path, monkeypatch):
  calls = []

  def fake_subprocess(name, data_dir, manual_dir=None):
    calls.append((name, data_dir, manual_dir))
    raise DatasetError("relayed")

  monkeypatch.setattr(tfds_prepare, "is_prepared", lambda name, data_dir=None: False)
  monkeypatch.setattr(tfds_prepare, "prepare_in_subprocess", fake_subprocess)
  with pytest.raises(DatasetError, match="relayed"):
    load_images("celeb_a", data_dir=str(tmp_path), manual_dir=str(tmp_path / "m"))
  assert calls == [("celeb_a", str(tmp_path), str(tmp_path / "m"))]


# --------------------------------------------------------------------------
# Sizes, memory budget, the CLI, and no TensorFlow in the training process.


def test_sizes_and_memory_budget(tmp_path):
  assert data.dataset_bytes("celeb_a", split="train+validation+test") == 202599 * 96 * 96 * 3
  assert fits_in_memory("celeb_a", 96, 6 * 10**9, split="train+validation+test")
  assert not fits_in_memory("lsun/bedroom", 96, 80 * 10**9)
  assert fits_in_memory("lsun/bedroom", 32, 10 * 10**9)
  assert data.dataset_bytes("mnist") == 60000 * 28 * 28
  assert data.dataset_bytes(data.TWO_CLASS_LSUN) == (3033042 + 126227) * 96 * 96 * 3
  root = tmp_path / "images"
  _write_folder(root)
  name, d = f"folder:{root}", str(tmp_path / "tfds")
  assert data.dataset_bytes(name, data_dir=d) == 10 * 96 * 96 * 3  # files: an upper bound
  assert dataset_size(name, data_dir=d) == 7  # prepares; the exact count
  assert data.dataset_bytes(name, data_dir=d) == 7 * 96 * 96 * 3


def test_load_images_refuses_what_does_not_fit(tmp_path, monkeypatch):
  root = tmp_path / "solid"
  _solid_folder(root, 3)
  monkeypatch.setattr(datasets, "memory_limit", lambda: 1000)
  with pytest.raises(DatasetError, match="use igan_jax.data.stream_batches"):
    load_images(f"folder:{root}", data_dir=str(tmp_path / "tfds"))


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
  return env


def test_cli_and_training_process_without_tensorflow(tmp_path):
  root = tmp_path / "solid"
  _solid_folder(root, 4)
  d = str(tmp_path / "tfds")
  proc = subprocess.run([sys.executable, "-m", "igan_jax.data.prepare",
                         f"--dataset=folder:{root}", "--resolution=24", f"--data_dir={d}"],
                        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  path = core.prepared_path(d, core.spec(f"folder:{root}"), "train", 24)
  assert f"prepared {path}" in proc.stdout and _manifest(path)["count"] == 4

  empty = tmp_path / "empty"
  empty.mkdir()
  proc = subprocess.run([sys.executable, "-m", "igan_jax.data.prepare",
                         f"--dataset=folder:{empty}", f"--data_dir={d}"],
                        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("igan_jax.data.prepare: error: ")
  assert "contains no files" in proc.stderr and "Traceback" not in proc.stderr

  lsun_dir = _lsun_manual(tmp_path / "lsun", "extracted", None)
  script = (
      "import json, sys\n"
      "from igan_jax.data import load_images, stream_batches\n"
      "x, _ = load_images(sys.argv[1], data_dir=sys.argv[2], resolution=24)\n"
      "with stream_batches('lsun/bedroom', batch_size=4, data_dir=sys.argv[3]) as s:\n"
      "    b, _ = next(s)\n"
      "print(json.dumps({'folder': x.shape, 'lsun': b.shape,\n"
      "                  'tf': 'tensorflow' in sys.modules,\n"
      "                  'tfds': 'tensorflow_datasets' in sys.modules}))\n")
  proc = subprocess.run([sys.executable, "-c", script, f"folder:{root}", d, lsun_dir],
                        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out == {"folder": [4, 24, 24, 3], "lsun": [4, 96, 96, 3], "tf": False, "tfds": False}


def test_stream_and_helpers_for_mnist_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds
  d = str(tmp_path)
  with tfds.testing.mock_data(num_examples=6):
    x, y = load_images("mnist", data_dir=d)
    with stream_batches("mnist", batch_size=4, seed=5, data_dir=d) as s:
      xb, yb = next(s)
    rows = stream_lib.epoch_permutation(5, 0, 6)[:4]
    np.testing.assert_array_equal(xb, x[rows])
    np.testing.assert_array_equal(yb, y[rows])
    assert xb.shape == (4, 28, 28, 1)
    with stream_batches("mnist", batch_size=2, data_dir=d, resolution=96,
                        label=int(y[0])) as s:
      xb, yb = next(s)
    assert xb.shape == (2, 96, 96, 1) and (yb == y[0]).all()
    assert dataset_size("mnist", data_dir=d) == 6
    assert data.dataset_bytes("mnist", data_dir=d) == 6 * 28 * 28
  assert list(tmp_path.iterdir()) == []
