"""Judge stage: stored responses -> verdicts."""
