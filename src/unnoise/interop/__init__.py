from .schedule import DiffusersSchedule
