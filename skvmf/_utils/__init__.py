"""Small shared services: display tables, uncertainty intervals,
convergence records, progress and warnings that point at the user's line.

Nothing here is public.
"""
