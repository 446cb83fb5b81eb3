"""Monitoring unit: the drift job, the retraining policy and trigger, metrics, dashboards, rules.

    fraudops drift check        # one window: reports, metrics, policy decision, maybe retraining
    fraudops drift decisions    # the decisions log (trigger or not, and why)
"""
