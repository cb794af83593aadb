"""A typed client for the genq jobs API: `Client` (blocking) and `AsyncClient`, both on httpx.

from genq_client import Client

with Client() as genq:  # GENQ_API_URL, GENQ_API_KEY
    job = genq.submit_and_wait("basic_clean", {"image_url": "https://example.com/shoe.png"})
    paths = genq.download(job, "out/")
"""

from genq_client._async import AsyncClient
from genq_client._sync import Client
from genq_client._wire import VERSION as __version__
from genq_client.errors import ApiConnectionError, ApiError, GenqError, WaitTimeout, WebhookVerificationError
from genq_client.models import TERMINAL_STATUSES, Job, JobError, JobPage, QueuePlace, Result, Timings
from genq_client.webhooks import verify_webhook

__all__ = [
    "TERMINAL_STATUSES",
    "ApiConnectionError",
    "ApiError",
    "AsyncClient",
    "Client",
    "GenqError",
    "Job",
    "JobError",
    "JobPage",
    "QueuePlace",
    "Result",
    "Timings",
    "WaitTimeout",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
