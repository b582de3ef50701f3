"""The batch capability (Cloud Run GPU jobs fed by Cloud Tasks): its config section today.

Published: `BatchJobConfig`.
"""

from components.batch.config import BatchJobConfig

__all__ = ["BatchJobConfig"]
