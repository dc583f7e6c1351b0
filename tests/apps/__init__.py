"""Tests of the grid apps (apps/)."""
