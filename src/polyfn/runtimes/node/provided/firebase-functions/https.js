'use strict';
// require('firebase-functions/https') and '/v2/https': the v2 HTTPS API (see index.js)
module.exports = require('./index')._v2https;
