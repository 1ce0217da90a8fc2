"""The HTML pages: login, dashboard, job and history, servers, account and tokens,
webhooks, admin (users, nodes), and the job log download."""
