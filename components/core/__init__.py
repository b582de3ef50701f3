"""What every capability builds on: the config machinery, the stack and region contexts, IAM helpers,
published outputs, and the cloud catalogs.

Import from the submodules (`components.core.config`, `components.core.context`, ...): the policy pack
reads `components.core.catalog` in its own process and must not pay for the cloud SDKs.
"""
