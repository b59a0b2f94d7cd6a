<?php
// The container image's style: statements instead of one array.
$CONFIG = array();
$CONFIG['overwrite.cli.url'] = 'https://cloud.example.com';
$CONFIG['dbtype'] = 'pgsql';
$CONFIG['dbhost'] = 'postgres';
$CONFIG['dbname'] = 'nextcloud';
$CONFIG['dbuser'] = 'nextcloud';
$CONFIG['dbpassword'] = 'secret';
if (getenv('REDIS_HOST')) {
  $CONFIG['redis'] = array(
    'host' => getenv('REDIS_HOST'),
    'password' => getenv('REDIS_HOST_PASSWORD_FILE') ? trim(file_get_contents(getenv('REDIS_HOST_PASSWORD_FILE'))) : (string) getenv('REDIS_HOST_PASSWORD'),
  );
  if (getenv('REDIS_HOST_PORT') !== false) {
    $CONFIG['redis']['port'] = (int) getenv('REDIS_HOST_PORT');
  } elseif (getenv('REDIS_HOST')[0] != '/') {
    $CONFIG['redis']['port'] = 6379;
  } else {
    $CONFIG['redis']['port'] = 0;
  }
}
