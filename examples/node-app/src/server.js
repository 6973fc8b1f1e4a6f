'use strict';
// Answers on port 3000 with a page that shows the npm-installed dependency was loaded.
const http = require('http');
const greeting = require('greeting');

const port = Number(process.env.PORT || 3000);

const server = http.createServer((req, res) => {
  const body = `<h1>node-app</h1>\n<p>${greeting.greet('imagetool')}</p>\n` +
    `<p>node ${process.version}</p>\n`;
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(body);
});

// As PID 1 node gets no default SIGTERM handler: exit on it so `imagetool stop` is quick.
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}

server.listen(port, () => console.log(`listening on port ${port}`));
