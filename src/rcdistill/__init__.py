"""rcdistill: image-free distillation of text-to-image diffusion models with Random Conditioning."""
import os

# Nothing is downloaded at run time: fail fast instead of retrying a model hub.
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
    # progress bars refresh at most every 2 s (logs stay short); tqdm reads TQDM_* when it is
    # imported, so a caller's own value (the Prefect flow sets 5) wins
    "TQDM_MININTERVAL": "2",
}.items():
    os.environ.setdefault(_key, _value)

from ._torchvision_compat import fix_torchvision_on_import  # noqa: E402

fix_torchvision_on_import()

