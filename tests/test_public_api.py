import subprocess
import sys

import skvmf


def test_every_public_name_resolves():
    for name in skvmf.__all__:
        assert getattr(skvmf, name) is not None, name
    assert set(dir(skvmf)) >= set(skvmf.__all__)


def test_distribution_and_mixture_do_not_import_torch():
    code = (
        "import sys, numpy as np, skvmf\n"
        "from skvmf import RevisedVMFMixture, vmf\n"
        "X = vmf.sample(np.eye(3)[0], 20.0, 50, random_state=0)\n"
        "RevisedVMFMixture(2, kappa='learned', random_state=0).fit(X)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
