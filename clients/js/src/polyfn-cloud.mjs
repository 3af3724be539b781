// polyfn-cloud as an ES module: `import cloud from 'https://NODE/sdk/polyfn-cloud.mjs'`.
// The code is the UMD file beside this one (no build step); it registers itself on globalThis.
import './polyfn-cloud.js';

const cloud = globalThis.polyfnCloud;
export default cloud;
export const Cloud = cloud.Cloud;
export const CloudError = cloud.CloudError;
export const init = cloud.init.bind(cloud);
export const callFunction = cloud.callFunction.bind(cloud);
export const uploadFile = cloud.uploadFile.bind(cloud);
export const downloadFile = cloud.downloadFile.bind(cloud);
export const getTempFileURL = cloud.getTempFileURL.bind(cloud);
export const deleteFile = cloud.deleteFile.bind(cloud);
export const auth = cloud.auth.bind(cloud);
export const database = cloud.database.bind(cloud);
