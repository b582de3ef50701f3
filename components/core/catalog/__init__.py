"""The cloud facts config and policies check a stack against, one module per cloud.

Plain data with no cloud SDK imports: the policy pack reads it in its own process at every preview.
"""
