<?php
$CONFIG = array (
  'dbtype' => 'mysql',
  'dbhost' => 'localhost'
  'dbname' => 'nextcloud',
);
