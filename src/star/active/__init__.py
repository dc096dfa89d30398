"""The active-learning step that simulated runs and labelling projects share (`step.Learner`)."""
