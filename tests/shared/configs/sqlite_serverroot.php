<?php
$CONFIG = array (
  'overwrite.cli.url' => 'http://localhost:8080',
  'datadirectory' => OC::$SERVERROOT . '/data',
  'dbtype' => 'sqlite3',
  'redis' => ['host' => '127.0.0.1'],
  'apps_paths' => [
    ['path' => OC::$SERVERROOT . '/apps', 'url' => '/apps', 'writable' => false],
    ['path' => \OC::$SERVERROOT . '/custom_apps', 'url' => '/custom_apps', 'writable' => true],
  ],
);
