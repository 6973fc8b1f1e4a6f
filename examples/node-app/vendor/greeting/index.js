'use strict';
// A dependency small enough to live in the build context: proves `npm install` ran.
const { version } = require('./package.json');

exports.version = version;
exports.greet = (name) => `hello ${name}, from greeting ${version}`;
