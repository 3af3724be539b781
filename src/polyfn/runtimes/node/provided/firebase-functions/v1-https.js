'use strict';
// require('firebase-functions/v1/https') (see index.js)
module.exports = require('./index')._v1https;
