'use strict';
// require('firebase-functions/v1'): the v1 API (see index.js)
module.exports = require('./index').v1;
